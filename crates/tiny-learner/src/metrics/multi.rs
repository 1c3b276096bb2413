//! fastai's multi-label metrics, `accuracy_multi` and `F1ScoreMulti`, over multi-hot targets and a threshold.

use tiny_tensor::Tensor;

use super::{Metric, PendingPreds, ratio};
use crate::callbacks::sigmoid;
use crate::{LearnerError, Result};

/// Per-class tallies of multi-label predictions, each output thresholded on its own (after a sigmoid unless the
/// predictions are probabilities already): for each class the items predicted as it, the items that are it, and
/// the items that are both; and the item-class pairs counted.
#[derive(Debug, Clone)]
pub struct MultiCounts {
    thresh: f32,
    sigmoid: bool,
    /// The number of classes, from the first batch.
    classes: Option<usize>,
    pending: PendingPreds,
    hits: Vec<u64>,
    predicted: Vec<u64>,
    actual: Vec<u64>,
    pairs: u64,
}

impl MultiCounts {
    /// Counts that predict a class when its probability (the sigmoid of the output, with `sigmoid`) exceeds
    /// `thresh`.
    pub fn new(thresh: f32, sigmoid: bool) -> Self {
        MultiCounts {
            thresh,
            sigmoid,
            classes: None,
            pending: PendingPreds::default(),
            hits: Vec::new(),
            predicted: Vec::new(),
            actual: Vec::new(),
            pairs: 0,
        }
    }

    /// The threshold.
    pub fn thresh(&self) -> f32 {
        self.thresh
    }

    /// Forgets every batch.
    pub fn reset(&mut self) {
        *self = Self::new(self.thresh, self.sigmoid);
    }

    /// Keeps one batch: `preds` `[items, classes]` and `classes` flags per item.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming `what` when the shapes or flags do not fit.
    pub fn accumulate(&mut self, what: &'static str, preds: &Tensor, flags: &[u32]) -> Result<()> {
        let classes = preds.shape().get(1).copied().unwrap_or(0);
        if let Some(before) = self.classes
            && before != classes
        {
            let msg = format!("predictions have {classes} classes, earlier batches had {before}");
            return Err(LearnerError::InvalidArgument { what, msg });
        }
        let full = self.pending.push_multi_hot(what, preds, flags)?;
        self.classes = Some(classes);
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Reads the kept predictions back and counts them.
    ///
    /// # Errors
    /// A tensor error when the predictions cannot be read back from their device.
    pub fn flush(&mut self) -> Result<()> {
        for (preds, flags) in self.pending.drain() {
            let c = preds.shape()[1];
            if self.actual.is_empty() {
                for v in [&mut self.hits, &mut self.predicted, &mut self.actual] {
                    v.resize(c, 0);
                }
            }
            let probs = if self.sigmoid { sigmoid(&preds)? } else { preds };
            for (i, (&p, &t)) in probs.try_to_vec()?.iter().zip(&flags).enumerate() {
                let (p, t, class) = (p > self.thresh, t == 1, i % c.max(1));
                self.predicted[class] += u64::from(p);
                self.actual[class] += u64::from(t);
                self.hits[class] += u64::from(p && t);
                self.pairs += 1;
            }
        }
        Ok(())
    }

    /// The fraction of item-class pairs predicted right, yes or no: fastai's `accuracy_multi`. The right ones are
    /// the true positives and the true negatives, `pairs - (predicted - hits) - (actual - hits)`.
    pub fn accuracy(&mut self) -> Result<f32> {
        self.flush()?;
        let sum = |v: &[u64]| v.iter().sum::<u64>();
        let right = self.pairs + 2 * sum(&self.hits) - sum(&self.predicted) - sum(&self.actual);
        Ok(ratio(right, self.pairs))
    }

    /// The mean over every class of F1, `2 tp / (2 tp + fp + fn)`: scikit-learn's `f1_score(average='macro')` on
    /// multi-hot rows, which takes every column as a label; a class never present nor predicted scores 0
    /// (`zero_division=0`, what its default `"warn"` returns).
    pub fn macro_f1(&mut self) -> Result<f32> {
        self.flush()?;
        let c = self.actual.len();
        let sum: f64 = (0..c).map(|k| ratio(2 * self.hits[k], self.predicted[k] + self.actual[k]) as f64).sum();
        Ok(if c == 0 { 0.0 } else { (sum / c as f64) as f32 })
    }
}

/// fastai's `accuracy_multi(thresh=0.5, sigmoid=True)`, column `accuracy_multi`: the fraction of item-class pairs
/// whose prediction (probability above the threshold) is the target's flag.
#[derive(Debug, Clone)]
pub struct AccuracyMulti {
    counts: MultiCounts,
}

impl AccuracyMulti {
    /// The metric at `thresh`, on raw outputs (a sigmoid is applied first), as fastai's default.
    pub fn new(thresh: f32) -> Self {
        AccuracyMulti { counts: MultiCounts::new(thresh, true) }
    }

    /// The metric on predictions that are probabilities already (fastai's `sigmoid=False`).
    pub fn on_probabilities(thresh: f32) -> Self {
        AccuracyMulti { counts: MultiCounts::new(thresh, false) }
    }
}

/// fastai's `F1ScoreMulti(thresh=0.5, sigmoid=True, average='macro')`, column `f1_score`: the mean over classes of
/// each class's F1 (see [`MultiCounts::macro_f1`]).
#[derive(Debug, Clone)]
pub struct F1ScoreMulti {
    counts: MultiCounts,
}

impl F1ScoreMulti {
    /// The metric at `thresh`, on raw outputs (a sigmoid is applied first).
    pub fn new(thresh: f32) -> Self {
        F1ScoreMulti { counts: MultiCounts::new(thresh, true) }
    }
}

impl Metric for AccuracyMulti {
    fn name(&self) -> String {
        "accuracy_multi".into()
    }

    fn reset(&mut self) {
        self.counts.reset();
    }

    fn accumulate(&mut self, preds: &Tensor, targets: &[u32]) -> Result<()> {
        self.counts.accumulate("accuracy_multi", preds, targets)
    }

    fn value(&mut self) -> Result<f32> {
        self.counts.accuracy()
    }
}

impl Metric for F1ScoreMulti {
    fn name(&self) -> String {
        "f1_score".into()
    }

    fn reset(&mut self) {
        self.counts.reset();
    }

    fn accumulate(&mut self, preds: &Tensor, targets: &[u32]) -> Result<()> {
        self.counts.accumulate("F1ScoreMulti", preds, targets)
    }

    fn value(&mut self) -> Result<f32> {
        self.counts.macro_f1()
    }
}

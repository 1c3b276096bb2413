//! `ClassCounts`, per-class tallies of top predictions, and the metrics built on them: accuracy, error rate and
//! macro precision, recall and F1.

use tiny_tensor::Tensor;

use super::{Metric, PendingPreds, ratio};
use crate::{LearnerError, Result};

/// Per-class counts of top predictions (the first best score of each row, as `Tensor::argmax`): for each class
/// the items predicted as it, the items that are it, and the items that are both. They hold all that accuracy,
/// error rate, precision, recall and F1 need (a confusion matrix's diagonal and its row and column sums) in
/// memory linear in the number of classes.
///
/// The macro averages follow scikit-learn's `average='macro'` with `labels=None`, which fastai's `Precision`,
/// `Recall` and `F1Score` call: the mean over the classes that occur among the targets or the predictions.
/// A class that occurs in neither is left out of the mean. A class whose score would divide by zero (precision
/// of a class never predicted, recall of a class never a target) scores 0, scikit-learn's `zero_division=0`
/// (which its default, `"warn"`, also returns). With no item at all every value is 0.
#[derive(Debug, Clone, Default)]
pub struct ClassCounts {
    pending: PendingPreds,
    classes: Option<usize>,
    hits: Vec<u64>,
    predicted: Vec<u64>,
    actual: Vec<u64>,
}

impl ClassCounts {
    /// Counts with nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every batch.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Keeps one batch for counting (see [`Metric::accumulate`]); every batch must have the same classes.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming `what` when the shapes or targets do not fit.
    pub fn accumulate(&mut self, what: &'static str, preds: &Tensor, targets: &[u32]) -> Result<()> {
        if let (Some(before), Some(&now)) = (self.classes, preds.shape().get(1))
            && before != now
        {
            let msg = format!("predictions have {now} classes, earlier batches had {before}");
            return Err(LearnerError::InvalidArgument { what, msg });
        }
        let full = self.pending.push(what, preds, targets)?;
        let classes = preds.shape()[1];
        if self.classes.is_none() {
            self.classes = Some(classes);
            for v in [&mut self.hits, &mut self.predicted, &mut self.actual] {
                v.resize(classes, 0);
            }
        }
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
        for (preds, targets) in self.pending.drain() {
            for (p, y) in preds.argmax(-1)?.into_iter().zip(targets) {
                let (p, y) = (p as usize, y as usize);
                self.predicted[p] += 1;
                self.actual[y] += 1;
                if p == y {
                    self.hits[p] += 1;
                }
            }
        }
        Ok(())
    }

    /// The number of items counted.
    pub fn total(&mut self) -> Result<u64> {
        self.flush()?;
        Ok(self.actual.iter().sum())
    }

    /// The fraction of items whose top prediction is the target.
    pub fn accuracy(&mut self) -> Result<f32> {
        let total = self.total()?;
        Ok(ratio(self.hits.iter().sum(), total))
    }

    /// The fraction of items whose top prediction is not the target (0 with no item).
    pub fn error_rate(&mut self) -> Result<f32> {
        let total = self.total()?;
        Ok(ratio(total - self.hits.iter().sum::<u64>(), total))
    }

    /// The mean over classes of `hits / predicted`.
    pub fn macro_precision(&mut self) -> Result<f32> {
        self.macro_mean(|hits, predicted, _| ratio(hits, predicted))
    }

    /// The mean over classes of `hits / actual`.
    pub fn macro_recall(&mut self) -> Result<f32> {
        self.macro_mean(|hits, _, actual| ratio(hits, actual))
    }

    /// The mean over classes of F1, `2 hits / (predicted + actual)`, the harmonic mean of precision and recall.
    pub fn macro_f1(&mut self) -> Result<f32> {
        self.macro_mean(|hits, predicted, actual| ratio(2 * hits, predicted + actual))
    }

    /// The mean of `score(hits, predicted, actual)` over the classes that are predicted or are a target.
    fn macro_mean(&mut self, score: impl Fn(u64, u64, u64) -> f32) -> Result<f32> {
        self.flush()?;
        let (mut sum, mut labels) = (0.0f64, 0usize);
        for ((&h, &p), &a) in self.hits.iter().zip(&self.predicted).zip(&self.actual) {
            if p > 0 || a > 0 {
                sum += score(h, p, a) as f64;
                labels += 1;
            }
        }
        Ok(if labels == 0 { 0.0 } else { (sum / labels as f64) as f32 })
    }
}

/// A [`Metric`] that reads one value off [`ClassCounts`].
macro_rules! count_metric {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $lower:literal, $value:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $ty {
            counts: ClassCounts,
        }

        impl $ty {
            /// The metric, with nothing counted yet.
            pub fn new() -> Self {
                Self::default()
            }
        }

        impl Metric for $ty {
            fn name(&self) -> String {
                $name.to_string()
            }

            fn lower_is_better(&self) -> bool {
                $lower
            }

            fn reset(&mut self) {
                self.counts.reset();
            }

            fn accumulate(&mut self, preds: &Tensor, targets: &[u32]) -> Result<()> {
                self.counts.accumulate($name, preds, targets)
            }

            fn value(&mut self) -> Result<f32> {
                $value(&mut self.counts)
            }
        }
    };
}

count_metric!(
    /// fastai's `accuracy`, column `accuracy`: the fraction of items whose top prediction (the first best
    /// score, on ties) is the target.
    Accuracy,
    "accuracy",
    false,
    ClassCounts::accuracy
);

count_metric!(
    /// fastai's `error_rate`, column `error_rate`: `1 - accuracy`; lower is better.
    ErrorRate,
    "error_rate",
    true,
    ClassCounts::error_rate
);

count_metric!(
    /// fastai's `Precision(average='macro')`, column `precision_score` (fastai's name, scikit-learn's function):
    /// the mean over classes of the fraction of items predicted as a class that are it. See [`ClassCounts`] for
    /// the classes that count and zero divisions. fastai's default average is `'binary'`; tiny has the
    /// multi-class `'macro'` only.
    Precision,
    "precision_score",
    false,
    ClassCounts::macro_precision
);

count_metric!(
    /// fastai's `Recall(average='macro')`, column `recall_score`: the mean over classes of the fraction of a
    /// class's items predicted as it. See [`ClassCounts`] for the classes that count and zero divisions.
    Recall,
    "recall_score",
    false,
    ClassCounts::macro_recall
);

count_metric!(
    /// fastai's `F1Score(average='macro')`, column `f1_score`: the mean over classes of the harmonic mean of
    /// precision and recall, `2 tp / (2 tp + fp + fn)`. See [`ClassCounts`] for the classes that count.
    F1Score,
    "f1_score",
    false,
    ClassCounts::macro_f1
);

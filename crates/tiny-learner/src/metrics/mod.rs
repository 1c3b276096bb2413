//! Metrics: the `Metric` trait, fastai's `accuracy`, `error_rate`, `top_k_accuracy`, `Precision`, `Recall` and `F1Score`,
//! and for multi-label data `accuracy_multi` and `F1ScoreMulti`.
//!
//! A metric sees every batch of a phase through [`Metric::accumulate`] and gives one number for the whole phase
//! through [`Metric::value`], as fastai's `AccumMetric` does. Accumulating never reads the device: a metric keeps
//! the batch's detached predictions in a [`PendingPreds`] and counts them on the host every [`FLUSH_EVERY`]
//! batches and when its value is asked for, so that a GPU fit has no host synchronisation per batch.
//!
//! ```
//! use tiny_learner::metrics::{Metric, accuracy, error_rate};
//! use tiny_tensor::Tensor;
//! // Two items: the first is predicted right (class 1), the second wrong (class 0 instead of 1).
//! let preds = Tensor::from_vec(vec![0.1, 0.9, 0.8, 0.2], &[2, 2]).unwrap();
//! let (mut acc, mut err) = (accuracy(), error_rate());
//! acc.accumulate(&preds, &[1, 1]).unwrap();
//! err.accumulate(&preds, &[1, 1]).unwrap();
//! assert_eq!((acc.value().unwrap(), err.value().unwrap()), (0.5, 0.5));
//! assert!(err.lower_is_better() && !acc.lower_is_better());
//! ```

use tiny_tensor::Tensor;

use crate::{LearnerError, Result};

mod counts;
mod multi;
mod names;
mod top_k;

pub use counts::{Accuracy, ClassCounts, ErrorRate, F1Score, Precision, Recall};
pub use multi::{AccuracyMulti, F1ScoreMulti, MultiCounts};
pub use names::{METRIC_NAMES, metric_from_name, metrics_from_names};
pub use top_k::TopKAccuracy;

/// A number measured over a whole phase from the model's predictions and the targets, fastai's `Metric`.
///
/// `accumulate` is called once per batch with the model's raw scores (one row per item, detached) and the
/// targets; `value` gives the result over every batch since the last `reset`. Implementations must not read
/// the predictions back to the host in `accumulate` (keep them in a [`PendingPreds`] instead); `value` may,
/// and may be called more than once. A metric is cloned (then reset) for each phase and each callback that
/// tallies it, so a type only needs `#[derive(Clone, Debug)]` besides this trait.
pub trait Metric: std::fmt::Debug + MetricClone {
    /// The column name in the Recorder's table and the CSV log, such as `accuracy`.
    fn name(&self) -> String;

    /// Whether a lower value is better (`error_rate`); false, the default, means higher is better.
    fn lower_is_better(&self) -> bool {
        false
    }

    /// Forgets every batch seen so far.
    fn reset(&mut self);

    /// Adds one batch: `preds` of shape `[items, classes]` and one target class per item (for a multi-label
    /// metric, `classes` flags per item).
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the shapes do not fit or a target is not a class of `preds`.
    fn accumulate(&mut self, preds: &Tensor, targets: &[u32]) -> Result<()>;

    /// The metric over every batch since the last reset; 0 when there was no item.
    ///
    /// # Errors
    /// A tensor error when the predictions cannot be read back from their device.
    fn value(&mut self) -> Result<f32>;
}

/// Cloning a boxed metric, implemented for every `Metric` that is `Clone`.
pub trait MetricClone {
    /// A copy of this metric in a new box.
    fn clone_box(&self) -> Box<dyn Metric>;
}

impl<T: Metric + Clone + 'static> MetricClone for T {
    fn clone_box(&self) -> Box<dyn Metric> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn Metric> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A reset copy of `metric`, to tally one phase without touching the learner's own.
pub(crate) fn fresh(metric: &dyn Metric) -> Box<dyn Metric> {
    let mut m = metric.clone_box();
    m.reset();
    m
}

/// fastai's `accuracy`: the fraction of items whose top prediction (the first, on ties) is the target.
pub fn accuracy() -> Box<dyn Metric> {
    Box::new(Accuracy::new())
}

/// fastai's `accuracy_multi` at `thresh` (fastai's default is 0.5): the fraction of item-class pairs predicted right.
pub fn accuracy_multi(thresh: f32) -> Box<dyn Metric> {
    Box::new(AccuracyMulti::new(thresh))
}

/// fastai's `error_rate`: `1 - accuracy`; lower is better.
pub fn error_rate() -> Box<dyn Metric> {
    Box::new(ErrorRate::new())
}

/// fastai's `top_k_accuracy`: the fraction of items whose target is among the `k` best predictions.
///
/// # Errors
/// [`LearnerError::InvalidArgument`] when `k` is 0.
pub fn top_k_accuracy(k: usize) -> Result<Box<dyn Metric>> {
    Ok(Box::new(TopKAccuracy::new(k)?))
}

/// How many batches of predictions a [`PendingPreds`] keeps before its owner reads them back and counts them.
pub const FLUSH_EVERY: usize = 32;

/// Detached predictions and their targets, kept until they are read back to the host in bulk.
///
/// Reading a GPU tensor waits for all the work queued before it, so reading each batch's predictions would stop
/// the host from queueing the next step while the GPU runs this one; a metric keeps them here and counts them
/// every [`FLUSH_EVERY`] batches (when [`push`](Self::push) says so) and when its value is asked for.
#[derive(Debug, Clone, Default)]
pub struct PendingPreds {
    batches: Vec<(Tensor, Vec<u32>)>,
}

impl PendingPreds {
    /// Keeps `preds` (detached) and `targets` after checking, without reading the device, that `preds` is
    /// `[items, classes]` with one target per item and each target below `classes`. Returns whether
    /// [`FLUSH_EVERY`] batches are now waiting, the owner's cue to [`drain`](Self::drain) them.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming `what` when the shapes or the targets do not fit.
    pub fn push(&mut self, what: &'static str, preds: &Tensor, targets: &[u32]) -> Result<bool> {
        let bad = |msg: String| LearnerError::InvalidArgument { what, msg };
        let [items, classes] = matrix_shape(what, preds)?;
        if items != targets.len() {
            return Err(bad(format!("{items} rows of predictions for {} targets", targets.len())));
        }
        if let Some(t) = targets.iter().find(|&&t| t as usize >= classes) {
            return Err(bad(format!("target {t} is not one of the {classes} classes of the predictions")));
        }
        Ok(self.keep(preds, targets))
    }

    /// [`PendingPreds::push`] for multi-label targets: `preds` `[items, classes]` with `classes` flags per item,
    /// each 0 or 1.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming `what` when the shapes or the flags do not fit.
    pub fn push_multi_hot(&mut self, what: &'static str, preds: &Tensor, flags: &[u32]) -> Result<bool> {
        let bad = |msg: String| LearnerError::InvalidArgument { what, msg };
        let [items, classes] = matrix_shape(what, preds)?;
        if items * classes != flags.len() {
            return Err(bad(format!(
                "{items} rows of {classes} predictions for {} target values; a multi-label metric needs {classes} \
                 flags per item (single-label targets need accuracy)",
                flags.len()
            )));
        }
        if let Some(f) = flags.iter().find(|&&f| f > 1) {
            return Err(bad(format!("target flag {f} is neither 0 nor 1")));
        }
        Ok(self.keep(preds, flags))
    }

    /// Keeps checked predictions and targets; returns whether [`FLUSH_EVERY`] batches are now waiting.
    fn keep(&mut self, preds: &Tensor, targets: &[u32]) -> bool {
        self.batches.push((preds.detach(), targets.to_vec()));
        self.batches.len() >= FLUSH_EVERY
    }

    /// Takes every kept batch out, in the order they came.
    pub fn drain(&mut self) -> Vec<(Tensor, Vec<u32>)> {
        std::mem::take(&mut self.batches)
    }

    /// Forgets every kept batch.
    pub fn clear(&mut self) {
        self.batches.clear();
    }
}

/// The `[items, classes]` shape of `preds`, or an error naming `what` when it is not a matrix.
fn matrix_shape(what: &'static str, preds: &Tensor) -> Result<[usize; 2]> {
    match *preds.shape() {
        [items, classes] => Ok([items, classes]),
        _ => Err(LearnerError::InvalidArgument {
            what,
            msg: format!("needs predictions of shape [items, classes], got {:?}", preds.shape()),
        }),
    }
}

/// `num / den`, or 0 when `den` is 0: scikit-learn's `zero_division=0`.
pub(crate) fn ratio(num: u64, den: u64) -> f32 {
    if den == 0 { 0.0 } else { (num as f64 / den as f64) as f32 }
}

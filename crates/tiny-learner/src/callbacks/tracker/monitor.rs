//! `Monitor`: the per-epoch quantity that `EarlyStopping` and `SaveModel` watch, and which way is better.

use crate::metrics::Metric;
use crate::{EpochStats, LearnerError, Result};

/// The quantity that `EarlyStopping` and `SaveModel` watch, fastai's `monitor`.
///
/// ```
/// use tiny_learner::{Monitor, metrics};
/// let learner_metrics = vec![metrics::accuracy(), metrics::error_rate()];
/// assert!(Monitor::metric("error_rate").lower_is_better(&learner_metrics).unwrap());
/// assert!(!Monitor::metric("accuracy").lower_is_better(&learner_metrics).unwrap());
/// assert!(Monitor::metric("f1_score").lower_is_better(&learner_metrics).is_err(), "not a metric of the learner");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Monitor {
    /// The validation loss; lower is better.
    #[default]
    ValidLoss,
    /// The training loss; lower is better.
    TrainLoss,
    /// The validation value of the learner's metric of this name (`accuracy`, `error_rate`, ...), whose
    /// [`Metric::lower_is_better`] says which way is better.
    Metric(String),
}

impl Monitor {
    /// Watches the learner's metric called `name`.
    pub fn metric(name: impl Into<String>) -> Self {
        Monitor::Metric(name.into())
    }

    /// The monitored value of an epoch, if it was measured.
    pub fn value(&self, stats: &EpochStats) -> Option<f32> {
        match self {
            Monitor::ValidLoss => stats.valid_loss,
            Monitor::TrainLoss => Some(stats.train_loss),
            Monitor::Metric(name) => stats.metric(name),
        }
    }

    /// Whether a lower value is better: true for the losses, the metric's own answer otherwise.
    ///
    /// # Errors
    /// [`LearnerError::UnknownMetric`] when no metric among `metrics` (the learner's) has this name; it lists
    /// `valid_loss`, `train_loss` and the names of `metrics`.
    pub fn lower_is_better(&self, metrics: &[Box<dyn Metric>]) -> Result<bool> {
        let Monitor::Metric(name) = self else { return Ok(true) };
        match metrics.iter().find(|m| m.name() == *name) {
            Some(m) => Ok(m.lower_is_better()),
            None => {
                let mut known = vec![Monitor::ValidLoss.name().to_string(), Monitor::TrainLoss.name().to_string()];
                known.extend(metrics.iter().map(|m| m.name()));
                Err(LearnerError::UnknownMetric { name: name.clone(), known })
            }
        }
    }

    /// Whether `value` beats `best` by more than `min_delta`, in the direction `lower_is_better` gives; the first
    /// value that is a number always does.
    pub fn improved(lower_is_better: bool, value: f32, best: Option<f32>, min_delta: f32) -> bool {
        match best {
            None => !value.is_nan(),
            Some(best) if lower_is_better => value < best - min_delta,
            Some(best) => value > best + min_delta,
        }
    }

    /// The column name, as in the table.
    pub fn name(&self) -> &str {
        match self {
            Monitor::ValidLoss => "valid_loss",
            Monitor::TrainLoss => "train_loss",
            Monitor::Metric(name) => name,
        }
    }
}

/// fastai's `TrackerCallback`: the best value of a monitor in this fit, and the epochs since it last improved;
/// what `EarlyStopping` and `ReduceLROnPlateau` both keep.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    best: Option<f32>,
    wait: usize,
    lower_is_better: bool,
}

impl Tracker {
    /// Starts a fit, learning the monitor's direction from the learner's metrics (an unknown name fails here).
    pub(crate) fn reset(&mut self, monitor: &Monitor, learn: &crate::LearnerState) -> Result<()> {
        *self = Tracker { best: None, wait: 0, lower_is_better: monitor.lower_is_better(&learn.metrics)? };
        Ok(())
    }

    /// Reads the epoch's value from the history the `Recorder` wrote: `Ok(None)` when it improved on the best by
    /// more than `min_delta` (or was not measured), else the number of epochs in a row without improvement.
    /// `callback` names the caller for the error when there is no history.
    pub(crate) fn after_epoch(
        &mut self,
        monitor: &Monitor,
        min_delta: f32,
        learn: &crate::LearnerState,
        callback: &'static str,
    ) -> Result<Option<usize>> {
        let stats = learn.epoch_stats(callback)?;
        let Some(value) = monitor.value(stats) else { return Ok(None) };
        if Monitor::improved(self.lower_is_better, value, self.best, min_delta) {
            self.best = Some(value);
            self.wait = 0;
            return Ok(None);
        }
        self.wait += 1;
        Ok(Some(self.wait))
    }

    /// Starts counting the epochs without improvement again.
    pub(crate) fn restart_wait(&mut self) {
        self.wait = 0;
    }
}

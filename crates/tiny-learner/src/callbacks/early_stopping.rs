//! `EarlyStopping`: ends the fit when a monitored value stops improving.

use crate::{Callback, Cancel, CbResult, LearnerError, LearnerState, Monitor};

/// fastai's `EarlyStoppingCallback`: after each epoch it reads the monitored value from the history
/// the `Recorder` writes, and cancels the fit once `patience` epochs in a row failed to beat the best
/// by more than `min_delta`. A monitored metric is one of the learner's, whose direction says what is better;
/// `before_fit` fails with [`LearnerError::UnknownMetric`] when the learner has no metric of that name. It runs
/// last (order 65), after the logger and the checkpoints.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// The smallest change that counts as an improvement.
    pub min_delta: f32,
    /// How many epochs without improvement to allow.
    pub patience: usize,
    best: Option<f32>,
    lower_is_better: bool,
    wait: usize,
    /// The epoch after which the fit was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor`, stopping after `patience` epochs without improvement.
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            monitor,
            min_delta: 0.0,
            patience,
            best: None,
            lower_is_better: true,
            wait: 0,
            stopped_epoch: None,
        }
    }

    /// Sets the smallest change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta;
        self
    }
}

impl Callback for EarlyStopping {
    fn runs_in_inference(&self) -> bool {
        false
    }

    fn order(&self) -> i32 {
        65
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.lower_is_better = self.monitor.lower_is_better(&learn.metrics)?;
        self.best = None;
        self.wait = 0;
        self.stopped_epoch = None;
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let stats = learn.history.last().ok_or(LearnerError::NeedsRecorder { callback: "EarlyStopping" })?;
        let Some(value) = self.monitor.value(stats) else { return Ok(()) };
        if Monitor::improved(self.lower_is_better, value, self.best, self.min_delta) {
            self.best = Some(value);
            self.wait = 0;
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(learn.epoch);
            return Err(Cancel::Fit.into());
        }
        Ok(())
    }
}

//! `EarlyStopping`: ends the fit when a monitored value stops improving.

use super::monitor::Tracker;
use crate::{Callback, Cancel, CbResult, LearnerState, Monitor};

/// fastai's `EarlyStoppingCallback`: after each epoch it reads the monitored value from the history
/// the `Recorder` writes, and cancels the fit once `patience` epochs in a row failed to beat the best
/// by more than `min_delta`. A monitored metric is one of the learner's, whose direction says what is better;
/// `before_fit` fails with [`LearnerError::UnknownMetric`](crate::LearnerError::UnknownMetric) when the learner has no metric of that name. It runs
/// last (order 65), after the logger and the checkpoints.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// The smallest change that counts as an improvement.
    pub min_delta: f32,
    /// How many epochs without improvement to allow.
    pub patience: usize,
    tracker: Tracker,
    /// The epoch after which the fit was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor`, stopping after `patience` epochs without improvement.
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping { monitor, min_delta: 0.0, patience, tracker: Tracker::default(), stopped_epoch: None }
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
        self.tracker.reset(&self.monitor, learn)?;
        self.stopped_epoch = None;
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        match self.tracker.after_epoch(&self.monitor, self.min_delta, learn, "EarlyStopping")? {
            Some(wait) if wait >= self.patience => {
                self.stopped_epoch = Some(learn.epoch);
                Err(Cancel::Fit.into())
            }
            _ => Ok(()),
        }
    }
}

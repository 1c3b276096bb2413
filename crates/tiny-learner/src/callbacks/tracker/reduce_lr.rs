//! `ReduceLROnPlateau`: divides every group's learning rate when a monitored value stops improving.

use super::monitor::Tracker;
use crate::{Callback, CbResult, LearnerError, LearnerState, Monitor};

/// fastai's `ReduceLROnPlateau(monitor='valid_loss', min_delta=0, patience=1, factor=10, min_lr=0)`: after each
/// epoch it reads the monitored value from the history the `Recorder` writes, and once `patience` epochs in a row
/// failed to beat the best by more than `min_delta`, divides the learning rate of every group by `factor` (not
/// below `min_lr`) and starts counting again. Order 64: after the checkpoints, before `EarlyStopping`.
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    /// What to watch.
    pub monitor: Monitor,
    /// The smallest change that counts as an improvement.
    pub min_delta: f32,
    /// How many epochs without improvement to allow before reducing.
    pub patience: usize,
    /// The divisor of the learning rates.
    pub factor: f32,
    /// The floor of the learning rates.
    pub min_lr: f32,
    /// The epochs after which the rates were reduced, with the first group's new rate.
    pub reductions: Vec<(usize, f32)>,
    tracker: Tracker,
}

impl ReduceLROnPlateau {
    /// Watches `monitor` with fastai's defaults: patience 1, factor 10, no floor.
    pub fn new(monitor: Monitor) -> Self {
        ReduceLROnPlateau {
            monitor,
            min_delta: 0.0,
            patience: 1,
            factor: 10.0,
            min_lr: 0.0,
            reductions: Vec::new(),
            tracker: Tracker::default(),
        }
    }

    /// Sets how many epochs without improvement to allow.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the divisor of the learning rates.
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("lowers the learning rate between epochs")
    }

    fn order(&self) -> i32 {
        64
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        if !(self.factor.is_finite() && self.factor > 1.0) {
            let msg = format!("factor {} must be a finite number above 1", self.factor);
            return Err(LearnerError::InvalidArgument { what: "ReduceLROnPlateau", msg }.into());
        }
        self.tracker.reset(&self.monitor, learn)?;
        self.reductions.clear();
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let wait = self.tracker.after_epoch(&self.monitor, self.min_delta, learn, "ReduceLROnPlateau")?;
        if wait.is_some_and(|w| w >= self.patience) {
            let (factor, min_lr) = (self.factor, self.min_lr);
            let opt = learn.opt_mut("ReduceLROnPlateau")?;
            for group in opt.param_groups_mut() {
                group.lr = (group.lr / factor).max(min_lr);
            }
            let lr = opt.lr();
            learn.lr = lr;
            self.reductions.push((learn.epoch, lr));
            self.tracker.restart_wait();
        }
        Ok(())
    }
}

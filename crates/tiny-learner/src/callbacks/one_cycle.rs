//! `OneCycle`: the chapter's one-cycle learning rate (warm-up then anneal), with a cosine option and
//! optional momentum cycling.

use crate::schedule::{Shape, one_cycle_lr, one_cycle_mom};
use crate::{Callback, CbResult, LearnerState};

/// Sets the optimizer's learning rate before every training batch from the position in training,
/// `pos = (epoch * n_batches + batch) / (n_epochs * n_batches)`, exactly as the chapter's `OneCycle`:
/// from `base_lr / 10` up to `base_lr` over the first 25%, then down to 0, linearly. With `cosine()`
/// both stretches are half cosines; with `cycle_momentum()` the momentum goes 0.95 -> 0.85 -> 0.95
/// meanwhile, as fastai's `fit_one_cycle`.
#[derive(Debug, Clone)]
pub struct OneCycle {
    /// The peak learning rate.
    pub base_lr: f32,
    /// The fraction of training spent warming up.
    pub pct_start: f32,
    /// The warm-up starts at `base_lr / div_start`.
    pub div_start: f32,
    /// Linear as in the chapter, or cosine.
    pub shape: Shape,
    /// The momentum range `(max, min)` when cycling momentum.
    pub moms: Option<(f32, f32)>,
    /// The learning rate of every training batch, as the chapter records it.
    pub lrs: Vec<f32>,
    /// The momentum of every training batch, when cycling.
    pub momentums: Vec<f32>,
}

impl OneCycle {
    /// The chapter's schedule: `pct_start` 0.25, `div_start` 10, linear, no momentum cycling.
    pub fn new(base_lr: f32) -> Self {
        OneCycle {
            base_lr,
            pct_start: 0.25,
            div_start: 10.0,
            shape: Shape::Linear,
            moms: None,
            lrs: Vec::new(),
            momentums: Vec::new(),
        }
    }

    /// Uses half cosines instead of straight lines.
    pub fn cosine(mut self) -> Self {
        self.shape = Shape::Cosine;
        self
    }

    /// Cycles the momentum (SGD momentum or Adam's beta1) from 0.95 down to 0.85 and back.
    pub fn cycle_momentum(mut self) -> Self {
        self.moms = Some((0.95, 0.85));
        self
    }

    /// The learning rate at position `pos` in `[0, 1]`.
    pub fn lr_at(&self, pos: f32) -> f32 {
        one_cycle_lr(pos, self.base_lr, self.pct_start, self.div_start, self.shape)
    }
}

impl Callback for OneCycle {
    fn order(&self) -> i32 {
        60
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.lrs.clear();
        self.momentums.clear();
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training {
            return Ok(());
        }
        let n = learn.n_iter;
        let bn = learn.epoch * n + learn.iter;
        let mn = (learn.n_epochs * n).max(1);
        let pos = (bn as f64 / mn as f64) as f32;
        let lr = self.lr_at(pos);
        let opt = learn.opt_mut("OneCycle")?;
        opt.set_lr(lr);
        self.lrs.push(lr);
        if let Some((max, min)) = self.moms {
            let m = one_cycle_mom(pos, max, min, self.pct_start, self.shape);
            opt.set_momentum(m);
            self.momentums.push(m);
        }
        Ok(())
    }
}

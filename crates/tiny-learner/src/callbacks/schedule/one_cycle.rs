//! `OneCycle`: the chapter's one-cycle schedule (warm-up then anneal), a preset of `ParamScheduler`.

use super::{Hyper, ParamScheduler, Preset};
use crate::schedule::{Schedule, Shape, combined};

/// The chapter's `OneCycle`: before every training batch, the learning rate at `pos` = [`LearnerState::pct_train`](crate::LearnerState::pct_train),
/// from `base_lr / 10` up to `base_lr` over the first 25% of training, then down to 0, linearly. With `cosine()`
/// both stretches are half cosines; with `cycle_momentum()` the momentum goes 0.95 -> 0.85 -> 0.95 meanwhile, as
/// fastai's `fit_one_cycle`.
///
/// It runs the [`ParamScheduler`] of [`OneCycle::param_scheduler`], made from these fields at every fit. It stays a
/// type of its own so that the chapter's name finds it (`learn.callback::<OneCycle>()`) and its builder reads as
/// the chapter's arguments.
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
    preset: Preset,
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
            preset: Preset::default(),
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

    /// The learning rate over training.
    pub fn lr_sched(&self) -> Schedule {
        combined(self.pct_start, self.base_lr / self.div_start, self.base_lr, 0.0, self.shape)
    }

    /// The learning rate at position `pos` in `[0, 1]`.
    pub fn lr_at(&self, pos: f32) -> f32 {
        self.lr_sched().at(pos)
    }

    /// The preset: a `ParamScheduler` of the learning rate and, when cycling, of the momentum.
    pub fn param_scheduler(&self) -> ParamScheduler {
        let sched = ParamScheduler::new().with(Hyper::Lr, self.lr_sched());
        match self.moms {
            Some((max, min)) => sched.with(Hyper::Mom, combined(self.pct_start, max, min, max, self.shape)),
            None => sched,
        }
    }

    /// The learning rate of every training batch of the last fit, the chapter's `lrs`.
    pub fn lrs(&self) -> Vec<f32> {
        self.preset.values(Hyper::Lr)
    }

    /// The momentum of every training batch of the last fit, when cycling.
    pub fn momentums(&self) -> Vec<f32> {
        self.preset.values(Hyper::Mom)
    }
}

preset_callback!(OneCycle);

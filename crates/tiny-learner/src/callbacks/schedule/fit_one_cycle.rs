//! fastai's `fit_one_cycle` schedule, `FitOneCycle`, and the `Learner` methods `fit_one_cycle` and `fine_tune`.

use super::{Hyper, ParamScheduler, Preset};
use crate::schedule::{Schedule, combined_cos};
use crate::{Learner, LrRange, Result};

/// fastai's `fit_one_cycle` schedules: each group's learning rate goes from `lr_max / div` up to `lr_max` over the
/// first `pct_start` of training and down to `lr_max / div_final`, and the momentum from 0.95 to 0.85 and back, all
/// in half cosines. The chapter's linear [`crate::OneCycle`] stays beside it.
///
/// It runs the [`ParamScheduler`] of [`FitOneCycle::param_scheduler`], made from these fields at every fit, with one
/// learning-rate schedule per parameter group once the optimizer's groups are known.
#[derive(Debug, Clone)]
pub struct FitOneCycle {
    /// The peak rate of every group.
    pub lr_max: LrRange,
    /// The start is `lr_max / div` (fastai: 25).
    pub div: f32,
    /// The end is `lr_max / div_final` (fastai: 1e5).
    pub div_final: f32,
    /// The fraction of training spent warming up (fastai: 0.25).
    pub pct_start: f32,
    /// The momentum's start, middle and end (fastai: 0.95, 0.85, 0.95); `None` leaves it alone.
    pub moms: Option<(f32, f32, f32)>,
    preset: Preset,
}

impl FitOneCycle {
    /// fastai's defaults around `lr_max`.
    pub fn new(lr_max: LrRange) -> Self {
        FitOneCycle {
            lr_max,
            div: 25.0,
            div_final: 1e5,
            pct_start: 0.25,
            moms: Some((0.95, 0.85, 0.95)),
            preset: Preset::default(),
        }
    }

    /// Sets the warm-up fraction.
    pub fn with_pct_start(mut self, pct: f32) -> Self {
        self.pct_start = pct;
        self
    }

    /// Sets the starting divisor.
    pub fn with_div(mut self, div: f32) -> Self {
        self.div = div;
        self
    }

    /// The learning rate over training of a group whose peak is `peak`: fastai's
    /// `combined_cos(pct_start, peak / div, peak, peak / div_final)`.
    pub fn lr_sched(&self) -> impl Fn(f32) -> Schedule + Send + Sync + 'static {
        let (pct, div, div_final) = (self.pct_start, self.div, self.div_final);
        move |peak| combined_cos(pct, peak / div, peak, peak / div_final)
    }

    /// The learning rate at `pos` for a group whose peak is `peak`.
    pub fn lr_at(&self, peak: f32, pos: f32) -> f32 {
        self.lr_sched()(peak).at(pos)
    }

    /// The preset: a `ParamScheduler` of each group's learning rate and of the momentum, fastai's
    /// `ParamScheduler({'lr': combined_cos(..), 'mom': combined_cos(..)})`.
    pub fn param_scheduler(&self) -> ParamScheduler {
        let sched = ParamScheduler::new().per_group(Hyper::Lr, self.lr_max, self.lr_sched());
        match self.moms {
            Some((start, middle, end)) => sched.with(Hyper::Mom, combined_cos(self.pct_start, start, middle, end)),
            None => sched,
        }
    }

    /// Every group's learning rate at every training batch of the last fit.
    pub fn lrs(&self) -> &[Vec<f32>] {
        self.preset.hps(Hyper::Lr)
    }
}

preset_callback!(FitOneCycle);

impl Learner {
    /// fastai's `learn.fit_one_cycle(n_epoch, lr_max)` with its defaults (see [`FitOneCycle`]); pass a configured
    /// [`FitOneCycle`] to [`Learner::fit_with`] for other settings.
    pub fn fit_one_cycle(&mut self, n_epochs: usize, lr_max: LrRange) -> Result<()> {
        self.fit_with(n_epochs, FitOneCycle::new(lr_max))
    }

    /// Fits `n_epochs` with `schedule` added for this fit only.
    pub fn fit_with(&mut self, n_epochs: usize, schedule: FitOneCycle) -> Result<()> {
        self.add_cb(Box::new(schedule));
        let outcome = self.fit(n_epochs);
        self.remove_cb::<FitOneCycle>();
        outcome
    }

    /// fastai's `learn.fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, pct_start=0.3, div=5)`:
    /// `freeze_epochs` of `fit_one_cycle` on the head alone at `slice(base_lr)` with `pct_start` 0.99, then
    /// `unfreeze` and `epochs` of `fit_one_cycle` at `slice(base_lr / 2 / lr_mult, base_lr / 2)` with `pct_start`
    /// and `div`.
    pub fn fine_tune(&mut self, epochs: usize, base_lr: f32, freeze_epochs: usize) -> Result<()> {
        self.fine_tune_with(epochs, base_lr, freeze_epochs, 100.0, 0.3, 5.0)
    }

    /// [`Learner::fine_tune`] with every one of fastai's arguments.
    pub fn fine_tune_with(
        &mut self,
        epochs: usize,
        base_lr: f32,
        freeze_epochs: usize,
        lr_mult: f32,
        pct_start: f32,
        div: f32,
    ) -> Result<()> {
        if freeze_epochs > 0 {
            self.freeze()?;
            self.fit_with(freeze_epochs, FitOneCycle::new(LrRange::UpTo(base_lr)).with_pct_start(0.99))?;
        }
        let base_lr = base_lr / 2.0;
        self.unfreeze()?;
        self.fit_with(
            epochs,
            FitOneCycle::new(LrRange::Slice(base_lr / lr_mult, base_lr)).with_pct_start(pct_start).with_div(div),
        )
    }
}

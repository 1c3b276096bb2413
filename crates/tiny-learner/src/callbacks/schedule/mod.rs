//! fastai's `callback/schedule.py`: `ParamScheduler`, its presets (`OneCycle`, `FitOneCycle`) and the LR finder.

use std::collections::BTreeMap;
use std::sync::Arc;

use tiny_optim::{Optimizer, ParamGroup};

use crate::schedule::Schedule;
use crate::{Callback, CbResult, Event, LearnerState, LrRange};

/// The `Callback` of a preset (a type with a `preset: Preset` field and a `param_scheduler()` method): it varies
/// every batch, runs at order 60, and drives the `ParamScheduler` it makes afresh at each fit.
macro_rules! preset_callback {
    ($preset:ty) => {
        impl $crate::Callback for $preset {
            fn varies_per_batch(&self) -> Option<&'static str> {
                Some("changes the learning rate every batch")
            }

            fn order(&self) -> i32 {
                60
            }

            fn on(&mut self, event: $crate::Event, learn: &mut $crate::LearnerState) -> $crate::CbResult {
                let fresh = self.preset.stale(event).then(|| self.param_scheduler());
                self.preset.on(fresh, event, learn)
            }
        }
    };
}

mod fit_one_cycle;
mod lr_finder;
mod one_cycle;

pub use fit_one_cycle::FitOneCycle;
pub use lr_finder::{FinderStop, LrFindResult, LrFinder, LrSchedule, Suggest, smooth};
pub use one_cycle::OneCycle;

/// A hyper-parameter that a [`ParamScheduler`] sets in the optimizer's parameter groups: the keys of fastai's
/// `scheds` dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hyper {
    /// The learning rate, fastai's `lr`.
    Lr,
    /// SGD's momentum or Adam's `beta1`, fastai's `mom`.
    Mom,
}

impl Hyper {
    /// fastai's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Hyper::Lr => "lr",
            Hyper::Mom => "mom",
        }
    }

    fn set(self, group: &mut ParamGroup, value: f32) {
        match self {
            Hyper::Lr => group.lr = value,
            Hyper::Mom => group.momentum = value,
        }
    }
}

/// The schedule of one hyper-parameter in each parameter group.
#[derive(Clone)]
pub enum GroupSched {
    /// The same schedule in every group.
    All(Schedule),
    /// A schedule per group, made from each group's value in the range (fastai's `lr_range`) once the optimizer, and
    /// so the number of groups, exists: fastai's schedules over an array of peaks, as `fit_one_cycle(lr_max=slice(..))`.
    PerGroup(LrRange, Arc<dyn Fn(f32) -> Schedule + Send + Sync>),
}

impl std::fmt::Debug for GroupSched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupSched::All(sched) => f.debug_tuple("All").field(sched).finish(),
            GroupSched::PerGroup(range, _) => f.debug_tuple("PerGroup").field(range).finish(),
        }
    }
}

/// fastai's `ParamScheduler(scheds)`: before every training batch it sets each scheduled hyper-parameter, in every
/// parameter group, to its schedule's value at `pos` = [`LearnerState::pct_train`], and records the values (fastai's
/// `hps`). Validation batches are left alone. The chapter's [`OneCycle`] and fastai's [`FitOneCycle`] are presets of it.
///
/// ```
/// use tiny_learner::schedule::Sched;
/// use tiny_learner::{Hyper, InMemory, Learner, DataLoaders, ParamScheduler};
/// use tiny_nn::{Linear, cross_entropy};
/// use tiny_tensor::Tensor;
/// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
/// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 1).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
/// let sched = ParamScheduler::new().with(Hyper::Lr, Sched::cos(0.1, 0.0)).with(Hyper::Mom, Sched::lin(0.95, 0.85));
/// let mut learn = Learner::new(Box::new(Linear::new(2, 2).unwrap()), dls, cross_entropy, 0.1, vec![Box::new(sched)]);
/// learn.fit(2).unwrap();
/// let sched = learn.callback::<ParamScheduler>().unwrap();
/// assert_eq!(sched.values(Hyper::Lr), [0.1, Sched::cos(0.1, 0.0).at(0.25), 0.05, Sched::cos(0.1, 0.0).at(0.75)]);
/// assert!((sched.values(Hyper::Mom)[2] - 0.9).abs() < 1e-6, "half way from 0.95 to 0.85");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ParamScheduler {
    scheds: BTreeMap<Hyper, GroupSched>,
    /// The per-group schedules of this fit, made at its first training batch.
    made: BTreeMap<Hyper, Vec<Schedule>>,
    hps: BTreeMap<Hyper, Vec<Vec<f32>>>,
}

impl ParamScheduler {
    /// A scheduler with no schedule yet; add them with [`ParamScheduler::with`] and [`ParamScheduler::per_group`].
    pub fn new() -> Self {
        ParamScheduler::default()
    }

    /// Schedules `hyper` with `sched` (a `Sched` or a combined `Schedule`) in every group, replacing its schedule.
    pub fn with(mut self, hyper: Hyper, sched: impl Into<Schedule>) -> Self {
        self.scheds.insert(hyper, GroupSched::All(sched.into()));
        self
    }

    /// Schedules `hyper` with `make(value)` in each group, whose value comes from `range` (`LrRange::Slice(lo, hi)`
    /// spreads them from the body to the head), replacing its schedule.
    pub fn per_group(
        mut self,
        hyper: Hyper,
        range: LrRange,
        make: impl Fn(f32) -> Schedule + Send + Sync + 'static,
    ) -> Self {
        self.scheds.insert(hyper, GroupSched::PerGroup(range, Arc::new(make)));
        self
    }

    /// The schedule of `hyper`, if it has one.
    pub fn sched(&self, hyper: Hyper) -> Option<&GroupSched> {
        self.scheds.get(&hyper)
    }

    /// fastai's `hps[hyper]`, with every group: the value of `hyper` in each parameter group at each training batch of
    /// the last fit, in order. Empty when `hyper` is not scheduled.
    pub fn hps(&self, hyper: Hyper) -> &[Vec<f32>] {
        self.hps.get(&hyper).map_or(&[], Vec::as_slice)
    }

    /// The value of `hyper` in the last parameter group (the head's) at each training batch, as fastai's `hps`
    /// records it.
    pub fn values(&self, hyper: Hyper) -> Vec<f32> {
        self.hps(hyper).iter().filter_map(|groups| groups.last().copied()).collect()
    }

    /// fastai's `_update_val(pos)`: sets every scheduled hyper-parameter in every group, and records the values.
    fn set_at(&mut self, pos: f32, opt: &mut dyn Optimizer) {
        let n = opt.param_groups().len();
        for (&hyper, sched) in &self.scheds {
            let values: Vec<f32> = match sched {
                GroupSched::All(sched) => vec![sched.at(pos); n],
                GroupSched::PerGroup(range, make) => {
                    let made =
                        self.made.entry(hyper).or_insert_with(|| range.per_group(n).into_iter().map(&**make).collect());
                    made.iter().map(|sched| sched.at(pos)).collect()
                }
            };
            for (group, &value) in opt.param_groups_mut().iter_mut().zip(&values) {
                hyper.set(group, value);
            }
            self.hps.entry(hyper).or_default().push(values);
        }
    }
}

impl Callback for ParamScheduler {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("sets the hyper-parameters before every batch")
    }

    fn order(&self) -> i32 {
        60
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        // The optimizer, and so the number of groups, exists only once the fit has begun.
        self.made.clear();
        self.hps = self.scheds.keys().map(|&hyper| (hyper, Vec::new())).collect();
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.training {
            let pos = learn.pct_train();
            self.set_at(pos, learn.opt_mut("ParamScheduler")?.as_mut());
        }
        Ok(())
    }
}

/// The `ParamScheduler` a preset ([`OneCycle`], [`FitOneCycle`]) runs: made from the preset's settings at every fit,
/// so that settings changed between fits count, or at its first event outside a fit.
#[derive(Debug, Clone, Default)]
struct Preset(Option<ParamScheduler>);

impl Preset {
    /// Whether `event` needs the scheduler made afresh: a fit begins, or there is none yet.
    fn stale(&self, event: Event) -> bool {
        event == Event::BeforeFit || self.0.is_none()
    }

    /// Passes `event` to the scheduler, replaced first by `fresh` when there is one.
    fn on(&mut self, fresh: Option<ParamScheduler>, event: Event, learn: &mut LearnerState) -> CbResult {
        if fresh.is_some() {
            self.0 = fresh;
        }
        self.0.as_mut().map_or(Ok(()), |sched| sched.on(event, learn))
    }

    /// The scheduler's `hps(hyper)`; empty before the first fit.
    fn hps(&self, hyper: Hyper) -> &[Vec<f32>] {
        self.0.as_ref().map_or(&[], |sched| sched.hps(hyper))
    }

    /// The scheduler's `values(hyper)`; empty before the first fit.
    fn values(&self, hyper: Hyper) -> Vec<f32> {
        self.0.as_ref().map_or_else(Vec::new, |sched| sched.values(hyper))
    }
}

//! Schedules as pure functions of training progress `pos` in `[0, 1]`: fastai's `SchedLin`, `SchedCos`, `SchedExp`.
//!
//! Also fastai's `combine_scheds` ([`Schedule`], [`combine`]) and `combined_cos`, and the chapter's one-cycle. The
//! [`ParamScheduler`](crate::ParamScheduler) callback sets an optimizer's hyper-parameters from them.

use std::f32::consts::PI;

/// How a schedule moves from its start value to its end value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// A straight line, as in the chapter.
    #[default]
    Linear,
    /// Half a cosine: flat at both ends, fastest in the middle (fastai's default).
    Cosine,
    /// Geometric: `start * (end / start)^pos`, a straight line on a log scale (the LR finder's).
    Exponential,
}

/// A schedule from `start` to `end` with a `shape`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sched {
    /// The value at `pos = 0`.
    pub start: f32,
    /// The value at `pos = 1`.
    pub end: f32,
    /// The curve between them.
    pub shape: Shape,
}

impl Sched {
    /// A linear schedule, fastai's `SchedLin`.
    pub fn lin(start: f32, end: f32) -> Self {
        Sched { start, end, shape: Shape::Linear }
    }

    /// A cosine schedule, fastai's `SchedCos`.
    pub fn cos(start: f32, end: f32) -> Self {
        Sched { start, end, shape: Shape::Cosine }
    }

    /// An exponential schedule, fastai's `SchedExp`; `start` must not be 0.
    pub fn exp(start: f32, end: f32) -> Self {
        Sched { start, end, shape: Shape::Exponential }
    }

    /// The value at `pos` (clamped to `[0, 1]`).
    ///
    /// ```
    /// use tiny_learner::schedule::Sched;
    /// assert_eq!(Sched::lin(1.0, 3.0).at(0.5), 2.0);
    /// assert!((Sched::cos(1.0, 3.0).at(0.25) - 1.292_893).abs() < 1e-5);
    /// assert!((Sched::exp(1e-4, 1.0).at(0.5) - 1e-2).abs() < 1e-8);
    /// ```
    pub fn at(&self, pos: f32) -> f32 {
        let pos = pos.clamp(0.0, 1.0);
        let (start, end) = (self.start, self.end);
        match self.shape {
            Shape::Linear => start + pos * (end - start),
            Shape::Cosine => start + (1.0 - (PI * pos).cos()) / 2.0 * (end - start),
            Shape::Exponential => start * (end / start).powf(pos),
        }
    }
}

/// A whole schedule over training, fastai's `combine_scheds`: phase `i` covers the fraction `phases[i].0` of training
/// with its `Sched` (see [`combine`]). One `Sched` converts into a schedule of one phase over all of training.
///
/// ```
/// use tiny_learner::schedule::{Sched, Schedule};
/// let warm_then_flat = Schedule::new(vec![(0.1, Sched::lin(0.0, 1.0)), (0.9, Sched::lin(1.0, 1.0))]);
/// assert_eq!(warm_then_flat.at(0.05), 0.5);
/// assert_eq!(Schedule::from(Sched::lin(1.0, 3.0)).at(0.5), 2.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The fraction of training each phase covers (they should add up to 1) and its `Sched`.
    pub phases: Vec<(f32, Sched)>,
}

impl Schedule {
    /// fastai's `combine_scheds(pcts, scheds)`, with each fraction beside its `Sched`.
    pub fn new(phases: Vec<(f32, Sched)>) -> Self {
        Schedule { phases }
    }

    /// The value at `pos`.
    pub fn at(&self, pos: f32) -> f32 {
        combine(&self.phases, pos)
    }
}

impl From<Sched> for Schedule {
    fn from(sched: Sched) -> Self {
        Schedule::new(vec![(1.0, sched)])
    }
}

/// fastai's `combine_scheds`: schedule `i` covers the fraction `pcts[i]` of training, with its own
/// `pos` running from 0 to 1 over that stretch. The fractions should add up to 1; past the last
/// stretch the last schedule's end value holds.
pub fn combine(phases: &[(f32, Sched)], pos: f32) -> f32 {
    let mut begin = 0.0;
    for (i, &(pct, sched)) in phases.iter().enumerate() {
        let last = i + 1 == phases.len();
        if pos < begin + pct || last {
            let local = if pct > 0.0 { (pos - begin) / pct } else { 1.0 };
            return sched.at(local);
        }
        begin += pct;
    }
    0.0
}

/// Two phases of one `shape` that meet at `middle` after the fraction `pct` of training: the chapter's one-cycle
/// when linear, fastai's [`combined_cos`] when cosine.
pub fn combined(pct: f32, start: f32, middle: f32, end: f32, shape: Shape) -> Schedule {
    let up = Sched { start, end: middle, shape };
    let down = Sched { start: middle, end, shape };
    Schedule::new(vec![(pct, up), (1.0 - pct, down)])
}

/// fastai's `combined_cos(pct, start, middle, end)`: half cosines from `start` to `middle` over the fraction `pct`
/// of training, then to `end`; `fit_one_cycle`'s learning rate and momentum.
///
/// ```
/// use tiny_learner::schedule::combined_cos;
/// let lr = combined_cos(0.25, 0.004, 0.1, 1e-6);
/// assert_eq!((lr.at(0.0), lr.at(0.25)), (0.004, 0.1));
/// assert!((lr.at(1.0) - 1e-6).abs() < 1e-8, "to within the float spacing at the peak");
/// ```
pub fn combined_cos(pct: f32, start: f32, middle: f32, end: f32) -> Schedule {
    combined(pct, start, middle, end, Shape::Cosine)
}

/// The chapter's one-cycle learning rate at `pos`: from `base_lr / div` up to `base_lr` over the first
/// `pct_start` of training, then down to 0, in straight lines or (with `Shape::Cosine`) cosines.
///
/// ```
/// use tiny_learner::schedule::{Shape, one_cycle_lr};
/// assert!((one_cycle_lr(0.0, 0.1, 0.25, 10.0, Shape::Linear) - 0.01).abs() < 1e-8);
/// assert!((one_cycle_lr(0.25, 0.1, 0.25, 10.0, Shape::Linear) - 0.1).abs() < 1e-8);
/// ```
pub fn one_cycle_lr(pos: f32, base_lr: f32, pct_start: f32, div: f32, shape: Shape) -> f32 {
    combined(pct_start, base_lr / div, base_lr, 0.0, shape).at(pos)
}

/// fastai's momentum cycle at `pos`: from `max` down to `min` while the learning rate rises, and back.
pub fn one_cycle_mom(pos: f32, max: f32, min: f32, pct_start: f32, shape: Shape) -> f32 {
    combined(pct_start, max, min, max, shape).at(pos)
}

/// `start * ratio^n` (through `powi`): an exponential counted in steps rather than in `pos`, the chapter's LR finder,
/// which multiplies its rate by 1.2 every batch.
///
/// ```
/// use tiny_learner::schedule::geometric;
/// assert_eq!(geometric(1e-6, 1.2, 0), 1e-6);
/// assert!((geometric(1e-6, 1.2, 2) - 1.44e-6).abs() < 1e-12);
/// ```
pub fn geometric(start: f32, ratio: f32, n: usize) -> f32 {
    start * ratio.powi(n as i32)
}

//! Schedules as pure functions of training progress `pos` in `[0, 1]`, fastai's `SchedLin`,
//! `SchedCos` and `combine_scheds`, and the chapter's one-cycle learning rate.

use std::f32::consts::PI;

/// How a schedule moves from its start value to its end value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// A straight line, as in the chapter.
    #[default]
    Linear,
    /// Half a cosine: flat at both ends, fastest in the middle (fastai's default).
    Cosine,
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

    /// The value at `pos` (clamped to `[0, 1]`).
    ///
    /// ```
    /// use tiny_learner::schedule::Sched;
    /// assert_eq!(Sched::lin(1.0, 3.0).at(0.5), 2.0);
    /// assert!((Sched::cos(1.0, 3.0).at(0.25) - 1.292_893).abs() < 1e-5);
    /// ```
    pub fn at(&self, pos: f32) -> f32 {
        let pos = pos.clamp(0.0, 1.0);
        let t = match self.shape {
            Shape::Linear => pos,
            Shape::Cosine => (1.0 - (PI * pos).cos()) / 2.0,
        };
        self.start + t * (self.end - self.start)
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

/// The chapter's one-cycle learning rate at `pos`: from `base_lr / div` up to `base_lr` over the first
/// `pct_start` of training, then down to 0, in straight lines or (with `Shape::Cosine`) cosines.
///
/// ```
/// use tiny_learner::schedule::{Shape, one_cycle_lr};
/// assert!((one_cycle_lr(0.0, 0.1, 0.25, 10.0, Shape::Linear) - 0.01).abs() < 1e-8);
/// assert!((one_cycle_lr(0.25, 0.1, 0.25, 10.0, Shape::Linear) - 0.1).abs() < 1e-8);
/// ```
pub fn one_cycle_lr(pos: f32, base_lr: f32, pct_start: f32, div: f32, shape: Shape) -> f32 {
    let up = Sched { start: base_lr / div, end: base_lr, shape };
    let down = Sched { start: base_lr, end: 0.0, shape };
    combine(&[(pct_start, up), (1.0 - pct_start, down)], pos)
}

/// fastai's momentum cycle at `pos`: from `max` down to `min` while the learning rate rises, and back.
pub fn one_cycle_mom(pos: f32, max: f32, min: f32, pct_start: f32, shape: Shape) -> f32 {
    let down = Sched { start: max, end: min, shape };
    let up = Sched { start: min, end: max, shape };
    combine(&[(pct_start, down), (1.0 - pct_start, up)], pos)
}

//! `LrFinder` and `Learner::lr_find`: the chapter's LR finder, which puts the learner back and suggests a rate.

#[cfg(feature = "plot")]
use std::path::Path;

use tiny_optim::{Optimizer, OptimizerState};
use tiny_tensor::Tensor;

#[cfg(feature = "plot")]
use crate::plot::{LinePlot, Series};
use crate::schedule::{Sched, geometric};
use crate::{Callback, Cancel, CbResult, Learner, LearnerError, LearnerState, Result};

/// How the finder raises the learning rate from batch to batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// Multiplies it by this factor before every batch, as the chapter (1.2), until it passes `max_lr`.
    Mult(f32),
    /// Goes exponentially from the start to `end_lr` in `steps` batches, as fastai's `lr_find`.
    Exp {
        /// The learning rate of the last batch.
        end_lr: f32,
        /// The number of batches.
        steps: usize,
    },
}

impl LrSchedule {
    /// The rate of training batch `step` (from 0) of a search from `start`: for `Mult(m)` the chapter's
    /// `start * m^(step + 1)`, an exponential of the step count ([`geometric`]); for `Exp`, fastai's
    /// `SchedExp(start, end_lr)` at `pos = step / (steps - 1)`, which holds `end_lr` past the last step.
    ///
    /// ```
    /// use tiny_learner::LrSchedule;
    /// assert_eq!(LrSchedule::Mult(2.0).lr_at(1e-3, 0), 2e-3);
    /// let exp = LrSchedule::Exp { end_lr: 1.0, steps: 5 };
    /// assert_eq!(exp.lr_at(1e-4, 0), 1e-4);
    /// assert!((exp.lr_at(1e-4, 4) - 1.0).abs() < 1e-6 && exp.lr_at(1e-4, 9) == exp.lr_at(1e-4, 4));
    /// ```
    pub fn lr_at(self, start: f32, step: usize) -> f32 {
        match self {
            LrSchedule::Mult(m) => geometric(start, m, step + 1),
            LrSchedule::Exp { end_lr, steps } => Sched::exp(start, end_lr).at(step as f32 / (steps.max(2) - 1) as f32),
        }
    }
}

/// Why the finder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinderStop {
    /// The learning rate passed `max_lr`.
    LrAboveMax,
    /// The loss exceeded `stop_div` times its minimum.
    Diverged,
    /// The loss was not a number.
    NotANumber,
    /// The `Exp` schedule's steps were all done.
    StepsDone,
}

impl std::fmt::Display for FinderStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FinderStop::LrAboveMax => "the learning rate passed its maximum",
            FinderStop::Diverged => "the loss diverged (past stop_div times its minimum)",
            FinderStop::NotANumber => "the loss was not a number",
            FinderStop::StepsDone => "every step was done",
        })
    }
}

/// The chapter's `LRFinder` callback: starting from `start_lr` (1e-6) it raises the learning rate
/// every training batch and records the loss, and cancels the fit when the rate passes `max_lr` (10),
/// the loss is NaN or exceeds `stop_div` (4) times its minimum. Validation is skipped. It saves the
/// model's tensors (parameters and buffers), the optimizer (and any optimizer state a checkpoint left
/// pending) and `lr` in `before_fit` and puts them back in `after_fit`, so the search leaves the
/// learner as it found it. Run it with [`Learner::lr_find`]. Its rates come from [`LrSchedule::lr_at`], built on the
/// same schedules as the [`ParamScheduler`](crate::ParamScheduler).
#[derive(Debug)]
pub struct LrFinder {
    /// The first learning rate.
    pub start_lr: f32,
    /// How the rate grows.
    pub schedule: LrSchedule,
    /// The largest rate tried.
    pub max_lr: f32,
    /// Divergence threshold, as a multiple of the best loss.
    pub stop_div: f32,
    lrs: Vec<f32>,
    losses: Vec<f32>,
    best: f32,
    stop: Option<FinderStop>,
    saved: Option<Saved>,
}

struct Saved {
    tensors: Vec<(Tensor, Tensor)>,
    opt: Option<Box<dyn Optimizer>>,
    pending: Option<OptimizerState>,
    lr: f32,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Saved({} tensors, lr {})", self.tensors.len(), self.lr)
    }
}

impl Default for LrFinder {
    fn default() -> Self {
        LrFinder::new()
    }
}

impl LrFinder {
    /// The chapter's finder: from 1e-6, times 1.2 per batch, up to 10.
    pub fn new() -> Self {
        LrFinder {
            start_lr: 1e-6,
            schedule: LrSchedule::Mult(1.2),
            max_lr: 10.0,
            stop_div: 4.0,
            lrs: Vec::new(),
            losses: Vec::new(),
            best: f32::INFINITY,
            stop: None,
            saved: None,
        }
    }

    /// Starts from `lr`.
    pub fn start_lr(mut self, lr: f32) -> Self {
        self.start_lr = lr;
        self
    }

    /// Goes exponentially from the start to `end_lr` in `steps` batches instead.
    pub fn exponential(mut self, end_lr: f32, steps: usize) -> Self {
        self.schedule = LrSchedule::Exp { end_lr, steps };
        self
    }

    /// The most training batches the search can take.
    pub fn max_steps(&self) -> usize {
        match self.schedule {
            LrSchedule::Mult(m) if m > 1.0 => {
                ((self.max_lr / self.start_lr).ln() / m.ln()).ceil().max(1.0) as usize + 1
            }
            LrSchedule::Mult(_) => 1000,
            LrSchedule::Exp { steps, .. } => steps.max(1),
        }
    }

    /// Puts back the model's tensors, the optimizer and the learning rate saved by `before_fit`.
    fn restore(&mut self, learn: &mut LearnerState) -> Result<()> {
        if let Some(saved) = self.saved.take() {
            let _no_grad = tiny_tensor::no_grad();
            for (target, copy) in &saved.tensors {
                target.assign(copy)?;
            }
            learn.opt = saved.opt;
            learn.pending_opt_state = saved.pending;
            learn.lr = saved.lr;
        }
        Ok(())
    }

    /// The curve so far and the suggested rates.
    pub fn result(&self) -> LrFindResult {
        let smoothed = smooth(&self.losses, 0.98);
        let mut res = LrFindResult {
            lrs: self.lrs.clone(),
            losses: self.losses.clone(),
            smoothed,
            suggestion: None,
            suggestions: Vec::new(),
            stop: self.stop,
        };
        res.suggestions = Suggest::ALL.iter().filter_map(|&f| res.suggest(f).map(|lr| (f, lr))).collect();
        res.suggestion = res.suggest(Suggest::Valley);
        res
    }
}

/// fastai's suggestion functions for the LR finder (`SuggestionMethod`), each read off the smoothed curve with its
/// first tenth and last five points left out, as fastai's `lr_find` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggest {
    /// fastai's default: two thirds of the way along the longest stretch over which the loss keeps falling.
    Valley,
    /// The rate at the steepest descent of the loss against the log of the rate.
    Steep,
    /// A tenth of the rate at the loss's minimum.
    Minimum,
    /// Walks back from the end until the slope of the loss stops changing (fastai's `slide`).
    Slide,
}

impl Suggest {
    /// Every method, in fastai's order of mention.
    pub const ALL: [Suggest; 4] = [Suggest::Valley, Suggest::Slide, Suggest::Steep, Suggest::Minimum];

    /// The method's name, as fastai spells it.
    pub fn name(self) -> &'static str {
        match self {
            Suggest::Valley => "valley",
            Suggest::Steep => "steep",
            Suggest::Minimum => "minimum",
            Suggest::Slide => "slide",
        }
    }
}

impl LrFindResult {
    /// The part of the curve fastai reads suggestions from: `lrs[n/10 .. n-5]` and the smoothed losses there.
    fn window(&self) -> (&[f32], &[f32]) {
        let n = self.smoothed.len().min(self.lrs.len());
        let begin = n / 10;
        let end = if n >= begin + 5 + 2 { n - 5 } else { n };
        (&self.lrs[begin..end], &self.smoothed[begin..end])
    }

    /// The rate that `method` suggests, or `None` when the curve is too short or not finite.
    pub fn suggest(&self, method: Suggest) -> Option<f32> {
        let (lrs, losses) = self.window();
        if losses.len() < 2 || losses.iter().chain(lrs).any(|v| !v.is_finite()) {
            return None;
        }
        let argmin = |v: &[f32]| (0..v.len()).min_by(|&a, &b| v[a].total_cmp(&v[b]));
        match method {
            Suggest::Minimum => argmin(losses).map(|i| lrs[i] / 10.0),
            Suggest::Steep => {
                let grads: Vec<f32> =
                    (1..losses.len()).map(|i| (losses[i] - losses[i - 1]) / (lrs[i].ln() - lrs[i - 1].ln())).collect();
                argmin(&grads).map(|i| lrs[i])
            }
            Suggest::Valley => {
                // The longest decreasing subsequence ending at each point, fastai's O(n^2) search.
                let n = losses.len();
                // As in fastai, the start is the point before the run (-1 when the run begins at the first point).
                let (mut lds, mut max_start, mut max_end) = (vec![1isize; n], 0isize, 0usize);
                for i in 1..n {
                    for j in 0..i {
                        if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                            lds[i] = lds[j] + 1;
                        }
                        if lds[max_end] < lds[i] {
                            max_end = i;
                            max_start = max_end as isize - lds[max_end];
                        }
                    }
                }
                let sections = (max_end as isize - max_start) as f32 / 3.0;
                let idx = max_start + sections as isize + (sections / 2.0) as isize;
                lrs.get(idx.max(0) as usize).copied()
            }
            Suggest::Slide => {
                let (lr_diff, thresh) = (15isize, 0.005f32);
                let n = losses.len() as isize;
                if n <= lr_diff {
                    return None;
                }
                // numpy's gradient: central differences inside, one-sided at the ends.
                let g = |i: isize| -> f32 {
                    let i = i as usize;
                    match i {
                        0 => losses[1] - losses[0],
                        i if i + 1 == losses.len() => losses[i] - losses[i - 1],
                        i => (losses[i + 1] - losses[i - 1]) / 2.0,
                    }
                };
                let (mut r, mut l) = (n - 1, n - 1 - lr_diff);
                let mut local = lrs[l as usize];
                while l >= 0 && (g(r) - g(l)).abs() > thresh {
                    local = lrs[l as usize];
                    r -= 1;
                    l -= 1;
                }
                Some(local)
            }
        }
    }
}

/// fastai's smoothed loss: an exponential moving average with weight `beta`, debiased.
pub fn smooth(losses: &[f32], beta: f32) -> Vec<f32> {
    let mut avg = 0.0f32;
    losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            avg = beta * avg + (1.0 - beta) * l;
            avg / (1.0 - beta.powi(i as i32 + 1))
        })
        .collect()
}

/// The outcome of a learning-rate search.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindResult {
    /// The learning rate of every recorded batch.
    pub lrs: Vec<f32>,
    /// Its loss.
    pub losses: Vec<f32>,
    /// The losses smoothed as fastai does (EMA 0.98, debiased).
    pub smoothed: Vec<f32>,
    /// The suggested learning rate, fastai's default `valley` (see [`Suggest`]).
    pub suggestion: Option<f32>,
    /// Every method's suggestion, as fastai's `lr_find(suggest_funcs=(valley, slide, steep, minimum))`.
    pub suggestions: Vec<(Suggest, f32)>,
    /// Why the search stopped; `None` when the fit ran out of epochs first.
    pub stop: Option<FinderStop>,
}

impl LrFindResult {
    /// Says why the suggestion should not be trusted, when it should not: no suggestion at all, or one below the
    /// smallest rate tried, which happens when the smoothed loss is lowest at the very start of the search (as on a
    /// data set too small for it: the search then ends after a handful of batches).
    pub fn warning(&self) -> Option<String> {
        let first = self.lrs.first().copied()?;
        let steps = self.lrs.len();
        match self.suggestion {
            None => Some(format!("no rate can be suggested: none of the {steps} losses recorded is finite")),
            Some(s) if s < first => Some(format!(
                "the suggested rate {s:.1e} is below the smallest rate tried, {first:.1e}: the smoothed loss was \
                 lowest at the start of the search ({steps} steps), so the curve says little; look at the plot, or \
                 search on more data or from a lower start_lr"
            )),
            Some(_) => {
                let below: Vec<String> = (self.suggestions.iter().filter(|(_, lr)| *lr < first))
                    .map(|(m, lr)| format!("{} {lr:.1e}", m.name()))
                    .collect();
                (!below.is_empty()).then(|| {
                    format!(
                        "{} below the smallest rate tried, {first:.1e}, and left off the plot: the smoothed loss was \
                         lowest near the start of the search ({steps} steps)",
                        below.join(", ")
                    )
                })
            }
        }
    }

    /// Writes a PNG of loss against learning rate (log scale) with the suggestion marked.
    #[cfg(feature = "plot")]
    pub fn plot(&self, path: &Path) -> Result<()> {
        let pts = |v: &[f32]| self.lrs.iter().zip(v).map(|(&x, &y)| (x as f64, y as f64)).collect();
        let mut plot = LinePlot::new("learning rate finder", "learning rate (log scale)", "loss")
            .log_x()
            .series(Series::line("loss", pts(&self.losses)))
            .series(Series::line("smoothed", pts(&self.smoothed)));
        for &(method, lr) in &self.suggestions {
            plot = plot.mark_x(lr as f64, &format!("{} {lr:.1e}", method.name()));
        }
        plot.save_png(path)
    }
}

impl Callback for LrFinder {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("changes the learning rate every batch")
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn order(&self) -> i32 {
        70
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        let _no_grad = tiny_tensor::no_grad();
        let mut tensors = Vec::new();
        for (_, t) in learn.model.state_dict() {
            let copy = t.zeros_like()?;
            copy.assign(&t)?;
            tensors.push((t, copy));
        }
        // A checkpoint's optimizer state waits for the real fit, not for the search's optimizer.
        let pending = learn.pending_opt_state.take();
        self.saved = Some(Saved { tensors, opt: learn.opt.take(), pending, lr: learn.lr });
        self.lrs.clear();
        self.losses.clear();
        self.best = f32::INFINITY;
        self.stop = None;
        learn.lr = self.start_lr;
        Ok(())
    }

    fn before_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        Err(Cancel::Valid.into())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.training {
            let lr = self.schedule.lr_at(self.start_lr, self.lrs.len());
            learn.opt_mut("LrFinder")?.set_lr(lr);
        }
        Ok(())
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training {
            return Ok(());
        }
        let lr = learn.opt.as_ref().map_or(learn.lr, |o| o.lr());
        let loss = learn.loss.item()?;
        self.stop = if loss.is_nan() {
            Some(FinderStop::NotANumber)
        } else if loss > self.best * self.stop_div {
            Some(FinderStop::Diverged)
        } else if lr > self.max_lr {
            Some(FinderStop::LrAboveMax)
        } else {
            None
        };
        if self.stop.is_some() {
            return Err(Cancel::Fit.into());
        }
        self.losses.push(loss);
        self.lrs.push(lr);
        self.best = self.best.min(loss);
        if matches!(self.schedule, LrSchedule::Exp { steps, .. } if self.lrs.len() >= steps) {
            self.stop = Some(FinderStop::StepsDone);
            return Err(Cancel::Fit.into());
        }
        Ok(())
    }

    fn after_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        Ok(self.restore(learn)?)
    }
}

impl Learner {
    /// Runs `finder` (e.g. `LrFinder::new()`) as a fit long enough for its schedule, then removes it.
    /// The model's tensors, the optimizer and `lr` are as before, even when the search fails. The callbacks that keep
    /// a record across fits, [`Ema`](crate::Ema)'s average and [`TensorBoard`](crate::TensorBoard)'s log, sit the
    /// search out, as fastai's skip it: its ever larger rates are not training.
    pub fn lr_find(&mut self, finder: LrFinder) -> Result<LrFindResult> {
        let n = self.dls.train.len();
        if n == 0 {
            return Err(LearnerError::InvalidArgument {
                what: "lr_find",
                msg: "the training data has no batch".into(),
            });
        }
        let epochs = finder.max_steps().div_ceil(n);
        let n_epochs_before = self.n_epochs;
        let (ema, board) = (self.remove_cb::<crate::Ema>(), self.remove_cb::<crate::TensorBoard>());
        self.add_cb(Box::new(finder));
        let outcome = self.fit(epochs);
        self.state_mut().n_epochs = n_epochs_before;
        if let Some(ema) = ema {
            self.add_cb(ema);
        }
        if let Some(board) = board {
            self.add_cb(board);
        }
        let mut finder = self.remove_cb::<LrFinder>().ok_or_else(|| LearnerError::InvalidArgument {
            what: "lr_find",
            msg: "the LrFinder callback disappeared during the search".into(),
        })?;
        finder.restore(self.state_mut())?;
        outcome?;
        Ok(finder.result())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lrs: &[f32], suggestion: Option<f32>) -> LrFindResult {
        let losses = vec![1.0; lrs.len()];
        LrFindResult {
            lrs: lrs.to_vec(),
            smoothed: losses.clone(),
            losses,
            suggestion,
            suggestions: vec![],
            stop: None,
        }
    }

    #[test]
    fn a_suggestion_below_the_smallest_rate_tried_is_flagged() {
        // Issue 19: on a tiny set the finder suggested a rate below the smallest one it tried, without a word.
        let lrs = [1e-6, 1.2e-6, 1.44e-6];
        let warning = result(&lrs, Some(1e-7)).warning().expect("a warning");
        assert!(warning.contains("below the smallest rate tried") && warning.contains("3 steps"), "{warning}");
        assert_eq!(result(&lrs, Some(1.2e-6)).warning(), None, "a suggestion within the range tried is fine");
        assert!(result(&lrs, None).warning().is_some_and(|w| w.contains("no rate can be suggested")));
        assert_eq!(result(&[], None).warning(), None, "nothing was tried, so there is nothing to judge");
        let mut other = result(&lrs, Some(1.2e-6));
        other.suggestions = vec![(Suggest::Valley, 1.2e-6), (Suggest::Minimum, 1e-7)];
        let warning = other.warning().expect("minimum's suggestion is below the range");
        assert!(warning.starts_with("minimum 1.0e-7 below the smallest rate tried"), "{warning}");
    }

    #[test]
    fn each_suggestion_method_reads_the_curve_as_fastai() {
        // 100 rates from 1e-6 up by factors of 1.2; the smoothed loss is flat at 2 up to batch 30, falls along a
        // half cosine to 1 at batch 71 (steepest between 50 and 51), then climbs 0.2 a batch.
        let lrs: Vec<f32> = (0..100).map(|i| 1e-6 * 1.2f32.powi(i)).collect();
        let loss = |i: usize| match i {
            ..=30 => 2.0,
            31..=71 => 1.5 + 0.5 * (std::f32::consts::PI * (i - 30) as f32 / 41.0).cos(),
            _ => 1.0 + 0.2 * (i - 71) as f32,
        };
        let smoothed: Vec<f32> = (0..100).map(loss).collect();
        let res = LrFindResult {
            lrs: lrs.clone(),
            losses: smoothed.clone(),
            smoothed,
            suggestion: None,
            suggestions: vec![],
            stop: None,
        };
        assert_eq!(res.suggest(Suggest::Minimum), Some(lrs[71] / 10.0));
        assert_eq!(res.suggest(Suggest::Steep), Some(lrs[50]));
        // The longest fall runs from batch 29 (the plateau's last point counts once) to 71: 42 points; fastai
        // takes its start plus a third plus a sixth, 19 + 14 + 7 points into the window that starts at batch 10.
        assert_eq!(res.suggest(Suggest::Valley), Some(lrs[50]));
        // The climb's slope is the same everywhere, so slide stops at once, 15 points before the window's end (94).
        assert_eq!(res.suggest(Suggest::Slide), Some(lrs[79]));
        assert_eq!(result(&lrs[..3], None).suggest(Suggest::Valley), Some(lrs[0]), "a flat curve: its first point");
        assert_eq!(result(&lrs[..3], None).suggest(Suggest::Slide), None, "slide needs 16 points");
    }
}

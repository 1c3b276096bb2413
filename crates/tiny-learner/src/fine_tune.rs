//! fastai's transfer-learning recipe: splitters, `freeze` / `unfreeze`, learning-rate ranges, `fit_one_cycle`
//! with fastai's defaults, `fine_tune`, and `GradientAccumulation`.

use std::collections::HashSet;

use tiny_nn::{Module, Parameter};

use crate::schedule::{Sched, combine};
use crate::{Callback, Cancel, CbResult, Learner, LearnerError, LearnerState, Result};

/// fastai's `splitter`: the names of a model's parameters in groups, body first and head last. Discriminative
/// learning rates give each group its own rate, and `freeze` stops all but the last.
pub type Splitter = Box<dyn Fn(&dyn Module) -> Vec<Vec<String>>>;

/// The default splitter: every parameter in one group (fastai's `trainable_params`).
pub fn single_group(model: &dyn Module) -> Vec<Vec<String>> {
    vec![model.named_parameters().into_iter().map(|(n, _)| n).collect()]
}

/// fastai's `resnet_split` for tiny's torchvision-named resnet18: the stem with `layer1` and `layer2`, then
/// `layer3` and `layer4`, then the head `fc`.
pub fn resnet_split(model: &dyn Module) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new(), Vec::new(), Vec::new()];
    for (name, _) in model.named_parameters() {
        let g = if name.starts_with("fc.") {
            2
        } else if name.starts_with("layer3.") || name.starts_with("layer4.") {
            1
        } else {
            0
        };
        groups[g].push(name);
    }
    groups
}

/// A splitter into a body and the head whose parameters are under `head` (`"5"` for simple_cnn's last layer).
pub fn head_split(head: &str) -> Splitter {
    let prefix = format!("{head}.");
    Box::new(move |model| {
        let (head, body): (Vec<String>, Vec<String>) =
            model.named_parameters().into_iter().map(|(n, _)| n).partition(|n| n.starts_with(&prefix));
        vec![body, head]
    })
}

/// A learning rate for every parameter group: fastai's `lr` or `slice(lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrRange {
    /// The same rate for every group.
    One(f32),
    /// fastai's `slice(hi)`: `hi / 10` for every group but the last, which gets `hi`.
    UpTo(f32),
    /// fastai's `slice(lo, hi)`: rates spread geometrically from `lo` (first group) to `hi` (last).
    Slice(f32, f32),
}

impl LrRange {
    /// fastai's `Learner.lr_range`: the rate of each of `n` groups (`even_mults` for a slice).
    ///
    /// ```
    /// use tiny_learner::LrRange;
    /// assert_eq!(LrRange::UpTo(1e-3).per_group(3), [1e-3 / 10.0, 1e-3 / 10.0, 1e-3]);
    /// let lrs = LrRange::Slice(1e-5, 1e-3).per_group(3);
    /// assert!((lrs[1] - 1e-4).abs() < 1e-9 && lrs[2] == 1e-3);
    /// ```
    pub fn per_group(self, n: usize) -> Vec<f32> {
        match self {
            LrRange::One(lr) => vec![lr; n],
            LrRange::UpTo(hi) => (0..n).map(|i| if i + 1 == n { hi } else { hi / 10.0 }).collect(),
            LrRange::Slice(lo, hi) if n > 1 => {
                let step = (hi as f64 / lo as f64).powf(1.0 / (n - 1) as f64);
                (0..n).map(|i| if i + 1 == n { hi } else { (lo as f64 * step.powi(i as i32)) as f32 }).collect()
            }
            LrRange::Slice(_, hi) => vec![hi; n],
        }
    }

    /// The largest rate of the range, for logs.
    pub fn max(self) -> f32 {
        match self {
            LrRange::One(lr) | LrRange::UpTo(lr) | LrRange::Slice(_, lr) => lr,
        }
    }
}

/// The parameter groups the optimizer gets: the splitter's, with every frozen group cut down to its batchnorm
/// parameters (when `train_bn`) or to nothing. Every parameter must be in exactly one group.
pub(crate) fn trainable_groups(s: &LearnerState) -> Result<Vec<Vec<Parameter>>> {
    let named: Vec<(String, Parameter)> = s.model.named_parameters();
    let groups = (s.splitter)(s.model.as_ref());
    let bad = |msg: String| LearnerError::InvalidArgument { what: "splitter", msg };
    let mut seen = HashSet::new();
    for name in groups.iter().flatten() {
        if !seen.insert(name.as_str()) {
            return Err(bad(format!("{name} is in more than one group")));
        }
    }
    if let Some((missing, _)) = named.iter().find(|(n, _)| !seen.contains(n.as_str())) {
        return Err(bad(format!("{missing} is in no group")));
    }
    if s.frozen_groups >= groups.len() && s.frozen_groups > 0 {
        return Err(bad(format!("{} groups frozen of {}: nothing would train", s.frozen_groups, groups.len())));
    }
    let bn = batchnorm_parameters(s.model.as_ref(), "");
    let lookup = |name: &String| named.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
    Ok(groups
        .iter()
        .enumerate()
        .map(|(g, names)| {
            let frozen = g < s.frozen_groups;
            names.iter().filter(|n| !frozen || (s.train_bn && bn.contains(*n))).filter_map(lookup).collect()
        })
        .collect())
}

/// The dotted names of the parameters that belong to batchnorm layers under `module`.
fn batchnorm_parameters(module: &dyn Module, prefix: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    if module.name().starts_with("BatchNorm") {
        out.extend(module.named_parameters().into_iter().map(|(n, _)| format!("{prefix}{n}")));
    }
    for (child, m) in module.children() {
        out.extend(batchnorm_parameters(m, &format!("{prefix}{child}.")));
    }
    out
}

/// fastai's `fit_one_cycle` schedule, as a callback (fastai's `ParamScheduler`): each group's learning rate goes
/// from `lr_max / div` up to `lr_max` over the first `pct_start` of training and down to `lr_max / div_final`,
/// and the momentum from 0.95 to 0.85 and back, all in half cosines. The chapter's linear [`crate::OneCycle`] stays
/// beside it.
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
    /// Every group's learning rate at every training batch.
    pub lrs: Vec<Vec<f32>>,
    peaks: Vec<f32>,
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
            lrs: Vec::new(),
            peaks: Vec::new(),
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

    /// The learning rate at `pos` for a group whose peak is `peak`: fastai's `combined_cos`.
    pub fn lr_at(&self, peak: f32, pos: f32) -> f32 {
        let (start, end) = (peak / self.div, peak / self.div_final);
        combine(&[(self.pct_start, Sched::cos(start, peak)), (1.0 - self.pct_start, Sched::cos(peak, end))], pos)
    }
}

impl Callback for FitOneCycle {
    fn order(&self) -> i32 {
        60
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        // The optimizer, and so the number of groups, exists only once the fit has begun.
        self.peaks.clear();
        self.lrs.clear();
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training {
            return Ok(());
        }
        let (n, done) = (learn.n_iter, learn.epoch * learn.n_iter + learn.iter);
        let pos = (done as f64 / (learn.n_epochs * n).max(1) as f64) as f32;
        let mom = self.moms.map(|(a, b, c)| {
            combine(&[(self.pct_start, Sched::cos(a, b)), (1.0 - self.pct_start, Sched::cos(b, c))], pos)
        });
        let opt = learn.opt_mut("FitOneCycle")?;
        if self.peaks.is_empty() {
            self.peaks = self.lr_max.per_group(opt.param_groups().len());
        }
        let lrs: Vec<f32> = self.peaks.iter().map(|&peak| self.lr_at(peak, pos)).collect();
        for (group, &lr) in opt.param_groups_mut().iter_mut().zip(&lrs) {
            group.lr = lr;
            if let Some(m) = mom {
                group.momentum = m;
            }
        }
        self.lrs.push(lrs);
        Ok(())
    }
}

/// fastai's `GradientAccumulation(n_acc)`: the optimizer steps only once `n_acc` items have been seen, with the
/// gradients of the batches in between added up and each batch's loss weighted by its share of `n_acc`, so that
/// two batches of 64 with `n_acc = 128` step exactly as one batch of 128. The recorded loss is the batch's own.
#[derive(Debug, Clone)]
pub struct GradientAccumulation {
    /// The number of items per optimizer step.
    pub n_acc: usize,
    count: usize,
    unscaled: Option<tiny_tensor::Tensor>,
}

impl GradientAccumulation {
    /// Steps once every `n_acc` items.
    pub fn new(n_acc: usize) -> Result<Self> {
        if n_acc == 0 {
            return Err(LearnerError::InvalidArgument {
                what: "GradientAccumulation",
                msg: "n_acc must be >= 1".into(),
            });
        }
        Ok(GradientAccumulation { n_acc, count: 0, unscaled: None })
    }
}

impl Callback for GradientAccumulation {
    fn order(&self) -> i32 {
        // Before the other callbacks' before_step (GradientClip), which must see the whole accumulated gradient.
        -5
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.count = 0;
        Ok(())
    }

    fn before_backward(&mut self, learn: &mut LearnerState) -> CbResult {
        let share = learn.batch.len() as f32 / self.n_acc as f32;
        self.unscaled = Some(learn.loss.clone());
        learn.loss = learn.loss.mul_scalar(share)?;
        Ok(())
    }

    fn after_backward(&mut self, learn: &mut LearnerState) -> CbResult {
        if let Some(loss) = self.unscaled.take() {
            learn.loss = loss;
        }
        Ok(())
    }

    fn before_step(&mut self, learn: &mut LearnerState) -> CbResult {
        self.count += learn.batch.len();
        if self.count < self.n_acc {
            // Skips the step and the zero_grad after it, so the gradients keep adding up.
            return Err(Cancel::Batch.into());
        }
        self.count = 0;
        Ok(())
    }
}

impl Learner {
    /// Uses `splitter` for the optimizer's parameter groups from the next optimizer on.
    pub fn with_splitter(mut self, splitter: Splitter) -> Self {
        self.state_mut().splitter = splitter;
        self.state_mut().opt = None;
        self
    }

    /// fastai's `freeze_to(n)`: freezes the first `n` groups (a negative `n` counts from the end) and clears the
    /// optimizer, which the next fit creates afresh, as fastai's `opt.clear_state()`.
    pub fn freeze_to(&mut self, n: isize) -> Result<()> {
        let groups = (self.state().splitter)(self.state().model.as_ref()).len() as isize;
        let frozen = if n < 0 { groups + n } else { n };
        if frozen < 0 || frozen >= groups.max(1) && frozen > 0 {
            return Err(LearnerError::InvalidArgument {
                what: "freeze_to",
                msg: format!("{n} of {groups} groups would leave nothing to train"),
            });
        }
        self.state_mut().frozen_groups = frozen as usize;
        self.state_mut().opt = None;
        Ok(())
    }

    /// fastai's `freeze()`: trains only the last group, the head (and every batchnorm layer, with `train_bn`).
    pub fn freeze(&mut self) -> Result<()> {
        self.freeze_to(-1)
    }

    /// fastai's `unfreeze()`: trains every group.
    pub fn unfreeze(&mut self) -> Result<()> {
        self.freeze_to(0)
    }

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

//! fastai's parameter groups for transfer learning: splitters, `freeze` / `unfreeze` and learning-rate ranges.

use std::collections::HashSet;

use tiny_nn::{Module, Parameter};

use crate::{Learner, LearnerError, LearnerState, Result};

/// fastai's `splitter`: the names of a model's parameters in groups, body first and head last. Discriminative
/// learning rates give each group its own rate, and `freeze` stops all but the last.
pub type Splitter = Box<dyn Fn(&dyn Module) -> Vec<Vec<String>>>;

/// The default splitter: every parameter in one group (fastai's `trainable_params`).
pub fn single_group(model: &dyn Module) -> Vec<Vec<String>> {
    vec![model.named_parameters().into_iter().map(|(n, _)| n).collect()]
}

/// A resnet's three groups: the head (names starting with `head`), then `layer3` and `layer4` (names starting
/// with one of `late`), then everything else first.
fn resnet_groups(model: &dyn Module, late: [&str; 2], head: &str) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new(), Vec::new(), Vec::new()];
    for (name, _) in model.named_parameters() {
        let g = if name.starts_with(head) {
            2
        } else if late.iter().any(|l| name.starts_with(l)) {
            1
        } else {
            0
        };
        groups[g].push(name);
    }
    groups
}

/// fastai's `resnet_split` for tiny's torchvision-named resnets: the stem with `layer1` and `layer2`, then
/// `layer3` and `layer4`, then the head `fc`.
pub fn resnet_split(model: &dyn Module) -> Vec<Vec<String>> {
    resnet_groups(model, ["layer3.", "layer4."], "fc.")
}

/// fastai's `_resnet_split` for its `vision_learner` model (`tiny_nn::vision_resnet`): the body's stem with
/// `layer1` and `layer2` (`0.0` to `0.5`), then `layer3` and `layer4` (`0.6`, `0.7`), then the head (`1.`).
pub fn fastai_resnet_split(model: &dyn Module) -> Vec<Vec<String>> {
    resnet_groups(model, ["0.6.", "0.7."], "1.")
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
}

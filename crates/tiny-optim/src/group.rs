//! `ParamGroup`: parameters that share one set of hyper-parameters (a learning rate, a momentum, ...).

use std::collections::HashSet;

use tiny_nn::Parameter;

use crate::{OptimError, Result};

/// A list of parameters trained with the same hyper-parameters, like one entry of PyTorch's
/// `param_groups`. fastai's discriminative learning rates give each layer group its own `lr`.
///
/// One struct serves every optimizer; each reads the fields it needs. `momentum` is SGD's momentum
/// and Adam's `beta1`, so that one-cycle momentum scheduling drives both.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// The parameters, updated in place by `step`.
    pub params: Vec<Parameter>,
    /// The learning rate.
    pub lr: f32,
    /// SGD's momentum (0 disables it), or Adam's `beta1`.
    pub momentum: f32,
    /// The weight decay: an L2 term added to the gradient by `Sgd` and `Adam`, a decoupled shrink of
    /// the weights by `AdamW`.
    pub weight_decay: f32,
    /// SGD's dampening of the gradient in the momentum buffer (PyTorch's `dampening`, 0 by default).
    pub dampening: f32,
    /// Whether SGD uses Nesterov momentum.
    pub nesterov: bool,
    /// Adam's `beta2`, the decay of the running mean of squared gradients.
    pub beta2: f32,
    /// Adam's `eps`, added to the denominator for numerical stability.
    pub eps: f32,
}

impl ParamGroup {
    /// A group with learning rate `lr` and PyTorch's SGD defaults: no momentum, no weight decay, no
    /// dampening, no Nesterov; `beta2` 0.999 and `eps` 1e-8 for Adam. Note that Adam reads
    /// `momentum` as `beta1`, so set it (with `Adam::betas`, say) when building Adam from groups.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Self {
        ParamGroup {
            params,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            dampening: 0.0,
            nesterov: false,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// A group with `params` and every hyper-parameter of `self` (PyTorch's defaults for a new group).
    pub(crate) fn sibling(&self, params: Vec<Parameter>, lr: f32) -> Self {
        ParamGroup { params, lr, ..self.clone() }
    }

    /// Checks the hyper-parameters that every optimizer reads.
    pub(crate) fn check_common(&self, group: usize) -> Result<()> {
        check(group, "lr", self.lr, self.lr >= 0.0 && self.lr.is_finite(), "a finite value >= 0")?;
        check(
            group,
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            "a finite value >= 0",
        )
    }

    /// Checks the hyper-parameters that `Sgd` reads.
    pub(crate) fn check_sgd(&self, group: usize) -> Result<()> {
        self.check_common(group)?;
        let m = self.momentum;
        check(group, "momentum", m, m >= 0.0 && m.is_finite(), "a finite value >= 0")?;
        let d = self.dampening;
        check(group, "dampening", d, d.is_finite(), "a finite value")
    }

    /// Checks the hyper-parameters that `Adam` and `AdamW` read.
    pub(crate) fn check_adam(&self, group: usize) -> Result<()> {
        self.check_common(group)?;
        let unit = "a value in [0, 1)";
        check(group, "momentum (beta1)", self.momentum, (0.0..1.0).contains(&self.momentum), unit)?;
        check(group, "beta2", self.beta2, (0.0..1.0).contains(&self.beta2), unit)?;
        check(group, "eps", self.eps, self.eps >= 0.0 && self.eps.is_finite(), "a finite value >= 0")
    }
}

fn check(group: usize, name: &'static str, value: f32, ok: bool, expected: &'static str) -> Result<()> {
    if ok { Ok(()) } else { Err(OptimError::InvalidHyperParameter { group, name, value, expected }) }
}

/// Fails when there are no groups or when a parameter appears twice (by tensor identity, so clones of
/// one `Parameter` count as the same).
pub(crate) fn check_groups(groups: &[ParamGroup]) -> Result<()> {
    if groups.is_empty() {
        return Err(OptimError::NoParamGroups);
    }
    let mut seen = HashSet::new();
    for (group, g) in groups.iter().enumerate() {
        for (index, p) in g.params.iter().enumerate() {
            if !seen.insert(p.id()) {
                return Err(OptimError::DuplicateParameter { group, index });
            }
        }
    }
    Ok(())
}

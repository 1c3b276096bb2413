//! `Sgd`: the chapter's stochastic gradient descent, with PyTorch's momentum and Nesterov.

use tiny_nn::Parameter;
use tiny_tensor::{Tensor, no_grad};

use crate::core::{Core, ParamState, copy_like};
use crate::group::check_groups;
use crate::{Optimizer, OptimizerState, ParamGroup, Result};

/// Stochastic gradient descent with PyTorch's semantics.
///
/// With gradient `g`, weight decay `wd` and momentum `m`, each step computes `d = g + wd * p` (the
/// chapter's coupled weight decay), then, when `m > 0`, the buffer `b = m * b + (1 - dampening) * d`
/// (`b = d` on the first step) and replaces `d` by `b`, or by `d + m * b` with Nesterov. Finally
/// `p -= lr * d`. Plain SGD is a single in-place `p.add_scaled_(g, -lr)` per parameter.
///
/// ```
/// use tiny_nn::Parameter;
/// use tiny_optim::{Optimizer, Sgd};
/// use tiny_tensor::Tensor;
/// let p = Parameter::new(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
/// let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9).nesterov(true).weight_decay(1e-4);
/// p.set_grad(Some(Tensor::from_vec(vec![1.0, 1.0], &[2]).unwrap())).unwrap();
/// opt.step().unwrap();
/// assert!(p.to_vec()[0] < 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct Sgd {
    core: Core,
}

/// The name of SGD's one per-parameter buffer, as in PyTorch's state dict.
const NAMES: &[&str] = &["momentum_buffer"];

impl Sgd {
    /// SGD over `params` with learning rate `lr`, no momentum and no weight decay.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Self {
        Sgd { core: Core::single(ParamGroup::new(params, lr), "sgd", NAMES) }
    }

    /// SGD over several groups, each with its own hyper-parameters. Fails on an empty list or when a
    /// parameter appears twice.
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        Ok(Sgd { core: Core::new(groups, "sgd", NAMES)? })
    }

    /// Adds a group of `params` with learning rate `lr` and the last group's other hyper-parameters.
    pub fn param_group(mut self, params: Vec<Parameter>, lr: f32) -> Self {
        self.core.add_group(params, lr);
        self
    }

    /// Sets the momentum of every group (PyTorch's default is 0, no momentum). This builder shadows
    /// `Optimizer::momentum` on an `Sgd` value; read the momentum with `Optimizer::momentum(&opt)`.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.core.set_all(|g| g.momentum = momentum);
        self
    }

    /// Sets the dampening of every group: the buffer adds `(1 - dampening) * g` after the first step.
    pub fn dampening(mut self, dampening: f32) -> Self {
        self.core.set_all(|g| g.dampening = dampening);
        self
    }

    /// Turns Nesterov momentum on or off in every group.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.core.set_all(|g| g.nesterov = nesterov);
        self
    }

    /// Sets the (coupled, L2) weight decay of every group.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.core.set_all(|g| g.weight_decay = weight_decay);
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        check_groups(&self.core.groups)?;
        for (i, group) in self.core.groups.iter().enumerate() {
            group.check_sgd(i)?;
        }
        let _guard = no_grad();
        let Core { groups, state, .. } = &mut self.core;
        for group in groups.iter() {
            for p in &group.params {
                let Some(g) = p.grad() else { continue };
                let st = state.entry(p.id()).or_default();
                update(p, &g, st, group)?;
                st.step += 1;
            }
        }
        self.core.steps += 1;
        Ok(())
    }

    fn param_groups(&self) -> &[ParamGroup] {
        &self.core.groups
    }

    fn param_groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.core.groups
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        self.core.state_dict()
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.core.load_state_dict(state)
    }
}

/// One SGD update of `p` from its gradient `g`, written as in-place ops so that no full-size
/// temporary is needed: with `d = g + wd * p`, `p - lr * d = (1 - lr * wd) * p - lr * g`.
fn update(p: &Tensor, g: &Tensor, st: &mut ParamState, group: &ParamGroup) -> Result<()> {
    let (lr, m, wd) = (group.lr, group.momentum, group.weight_decay);
    if m == 0.0 {
        if wd != 0.0 {
            p.scale_(1.0 - lr * wd)?;
        }
        p.add_scaled_(g, -lr)?;
        return Ok(());
    }
    // The buffer takes `d = g + wd * p` before `p` changes.
    let buf = match st.buffers.first() {
        Some(buf) => {
            let keep = 1.0 - group.dampening;
            buf.scale_(m)?;
            buf.add_scaled_(g, keep)?;
            if wd != 0.0 {
                buf.add_scaled_(p, keep * wd)?;
            }
            buf.clone()
        }
        None => {
            let buf = copy_like(g, p)?;
            if wd != 0.0 {
                buf.add_scaled_(p, wd)?;
            }
            st.buffers = vec![buf.clone()];
            buf
        }
    };
    if group.nesterov {
        // p -= lr * (d + m * buf)
        if wd != 0.0 {
            p.scale_(1.0 - lr * wd)?;
        }
        p.add_scaled_(g, -lr)?;
        p.add_scaled_(&buf, -lr * m)?;
    } else {
        p.add_scaled_(&buf, -lr)?;
    }
    Ok(())
}

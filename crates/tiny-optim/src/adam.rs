//! `Adam` (L2 weight decay, like `torch.optim.Adam`) and `AdamW` (decoupled, like `torch.optim.AdamW`).

use std::collections::HashMap;

use tiny_nn::Parameter;
use tiny_tensor::{UpdateOp, UpdateProgram, no_grad};

use crate::core::{Core, ParamState};
use crate::fused::{settle, update_by_key};
use crate::group::check_groups;
use crate::{Optimizer, OptimizerState, ParamGroup, Result};

/// The names of Adam's per-parameter buffers, as in PyTorch's state dict.
const NAMES: &[&str] = &["exp_avg", "exp_avg_sq"];

/// Adam with bias-corrected moments, PyTorch's `torch.optim.Adam`.
///
/// With `beta1` the group's `momentum`, each step adds `wd * p` to the gradient (L2 weight decay),
/// updates `m = beta1 * m + (1 - beta1) * g` and `v = beta2 * v + (1 - beta2) * g^2`, and sets
/// `p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)`, `t` counting this parameter's
/// updates. Defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
///
/// ```
/// use tiny_nn::Parameter;
/// use tiny_optim::{Adam, Optimizer};
/// use tiny_tensor::Tensor;
/// let p = Parameter::new(Tensor::from_vec(vec![1.0], &[1]).unwrap());
/// let mut opt = Adam::new(vec![p.clone()], 0.1);
/// p.set_grad(Some(Tensor::from_vec(vec![0.5], &[1]).unwrap())).unwrap();
/// opt.step().unwrap();
/// // The first Adam step moves each weight by about lr, whatever the gradient's size.
/// assert!((p.to_vec()[0] - 0.9).abs() < 1e-5);
/// ```
#[derive(Debug, Clone)]
pub struct Adam {
    core: Core,
    decoupled: bool,
}

impl Adam {
    /// Adam over `params` with learning rate `lr` and PyTorch's defaults.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Self {
        Adam { core: Core::single(adam_group(params, lr), "adam", NAMES), decoupled: false }
    }

    /// Adam over several groups, each with its own hyper-parameters. `ParamGroup::new` leaves
    /// `momentum` (`beta1`) at 0, so set it per group or call `betas` afterwards.
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        Ok(Adam { core: Core::new(groups, "adam", NAMES)?, decoupled: false })
    }

    /// Adds a group of `params` with learning rate `lr` and the last group's other hyper-parameters.
    pub fn param_group(mut self, params: Vec<Parameter>, lr: f32) -> Self {
        self.core.add_group(params, lr);
        self
    }

    /// Sets `beta1` (stored as each group's `momentum`) and `beta2` in every group.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        self.core.set_all(|g| {
            g.momentum = beta1;
            g.beta2 = beta2;
        });
        self
    }

    /// Sets `eps` in every group.
    pub fn eps(mut self, eps: f32) -> Self {
        self.core.set_all(|g| g.eps = eps);
        self
    }

    /// Sets the weight decay of every group: an L2 term for `Adam`, a decoupled shrink for `AdamW`.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.core.set_all(|g| g.weight_decay = weight_decay);
        self
    }
}

/// AdamW, PyTorch's `torch.optim.AdamW`: Adam whose weight decay shrinks the weights directly,
/// `p -= lr * wd * p`, before the Adam update, instead of entering the moments through the
/// gradient. Defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
///
/// ```
/// use tiny_nn::Parameter;
/// use tiny_optim::{AdamW, Optimizer};
/// use tiny_tensor::Tensor;
/// let p = Parameter::new(Tensor::from_vec(vec![1.0], &[1]).unwrap());
/// let mut opt = AdamW::new(vec![p.clone()], 0.1).weight_decay(0.5);
/// p.set_grad(Some(Tensor::from_vec(vec![0.5], &[1]).unwrap())).unwrap();
/// opt.step().unwrap();
/// // 1 * (1 - 0.1 * 0.5) - 0.1 = 0.85.
/// assert!((p.to_vec()[0] - 0.85).abs() < 1e-5);
/// ```
#[derive(Debug, Clone)]
pub struct AdamW(Adam);

impl AdamW {
    /// AdamW over `params` with learning rate `lr` and PyTorch's defaults.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Self {
        let group = ParamGroup { weight_decay: 0.01, ..adam_group(params, lr) };
        AdamW(Adam { core: Core::single(group, "adamw", NAMES), decoupled: true })
    }

    /// AdamW over several groups, each with its own hyper-parameters (see `Adam::with_groups`).
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        Ok(AdamW(Adam { core: Core::new(groups, "adamw", NAMES)?, decoupled: true }))
    }

    /// Adds a group of `params` with learning rate `lr` and the last group's other hyper-parameters.
    pub fn param_group(self, params: Vec<Parameter>, lr: f32) -> Self {
        AdamW(self.0.param_group(params, lr))
    }

    /// Sets `beta1` (stored as each group's `momentum`) and `beta2` in every group.
    pub fn betas(self, beta1: f32, beta2: f32) -> Self {
        AdamW(self.0.betas(beta1, beta2))
    }

    /// Sets `eps` in every group.
    pub fn eps(self, eps: f32) -> Self {
        AdamW(self.0.eps(eps))
    }

    /// Sets the decoupled weight decay of every group.
    pub fn weight_decay(self, weight_decay: f32) -> Self {
        AdamW(self.0.weight_decay(weight_decay))
    }
}

/// A group with Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
fn adam_group(params: Vec<Parameter>, lr: f32) -> ParamGroup {
    ParamGroup { momentum: 0.9, ..ParamGroup::new(params, lr) }
}

impl Optimizer for Adam {
    fn varies_per_step(&self) -> Option<&'static str> {
        Some("corrects its moments by a step count that grows every step")
    }

    fn step(&mut self) -> Result<()> {
        check_groups(&self.core.groups)?;
        for (i, group) in self.core.groups.iter().enumerate() {
            group.check_adam(i)?;
        }
        let _guard = no_grad();
        let Core { groups, state, .. } = &mut self.core;
        for group in groups.iter() {
            step_group(group, state, self.decoupled)?;
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

    fn split_groups(&mut self, sizes: &[usize]) -> Result<()> {
        self.core.split_groups(sizes)
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        self.core.state_dict()
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.core.load_state_dict(state)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        self.0.step()
    }

    fn varies_per_step(&self) -> Option<&'static str> {
        self.0.varies_per_step()
    }

    fn param_groups(&self) -> &[ParamGroup] {
        self.0.param_groups()
    }

    fn param_groups_mut(&mut self) -> &mut [ParamGroup] {
        self.0.param_groups_mut()
    }

    fn split_groups(&mut self, sizes: &[usize]) -> Result<()> {
        self.0.split_groups(sizes)
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        self.0.state_dict()
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.0.load_state_dict(state)
    }
}

/// One Adam step of every parameter of `group` that has a gradient, as one fused `foreach_update_` over
/// `(p, g, exp_avg, exp_avg_sq)` (see [`program`]); parameters at another step count (whose bias
/// corrections differ) take a call of their own. The moments are created at a parameter's first step.
fn step_group(group: &ParamGroup, state: &mut HashMap<usize, ParamState>, decoupled: bool) -> Result<()> {
    let mut todo = Vec::new();
    for p in &group.params {
        let Some(g) = p.grad() else { continue };
        let st = state.entry(p.id()).or_default();
        let first = st.buffers.is_empty();
        if first {
            st.buffers = vec![p.zeros_like()?, p.zeros_like()?];
        }
        todo.push((p, g, first, st.step + 1));
    }
    let (done, result) = {
        let items: Vec<_> = todo
            .iter()
            .map(|(p, g, _, t)| {
                let b = &state[&p.id()].buffers;
                ((p.device(), *t), vec![p.tensor(), g, &b[0], &b[1]])
            })
            .collect();
        update_by_key(&items, |(_, t)| program(group, t, decoupled))
    };
    settle(state, todo.iter().map(|(p, _, first, _)| (p.id(), *first)), &done);
    Ok(result?)
}

/// Adam's step number `t` as an update program over `(p, g, m, v)`, in the float-op order of PyTorch (and of
/// tiny's earlier tensor-op Adam): `g = g + wd * p` (Adam's L2 term); `m = beta1 * m + (1 - beta1) * g`;
/// `v = beta2 * v + (1 - beta2) * g * g`; `p = shrink * p + alpha * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`
/// with `alpha = -lr / (1 - beta1^t)`, and `shrink = 1 - lr * wd` for AdamW's decoupled decay, else 1.
fn program(group: &ParamGroup, t: u64, decoupled: bool) -> UpdateProgram {
    use UpdateOp::{AddScalar, Axpby, Div, Mul, Scale, Sqrt};
    let (lr, b1, b2, wd) = (group.lr, group.momentum, group.beta2, group.weight_decay);
    // The corrections in f64: beta^t for large t underflows gracefully to 0 there.
    let t = t as f64;
    let bias1 = 1.0 - f64::from(b1).powf(t);
    let bias2 = 1.0 - f64::from(b2).powf(t);
    let alpha = -(f64::from(lr) / bias1) as f32;
    let shrink = if decoupled && wd != 0.0 { 1.0 - lr * wd } else { 1.0 };
    // Registers: 0 the parameter, 1 the gradient, 2 exp_avg, 3 exp_avg_sq, 4 a temporary.
    let mut ops = Vec::with_capacity(9);
    if !decoupled && wd != 0.0 {
        ops.push(Axpby { dst: 1, a: 1.0, x: 1, b: wd, y: 0 });
    }
    ops.extend([
        Axpby { dst: 2, a: b1, x: 2, b: 1.0 - b1, y: 1 },
        Mul { dst: 4, x: 1, y: 1 },
        Axpby { dst: 3, a: b2, x: 3, b: 1.0 - b2, y: 4 },
        Sqrt { dst: 4, x: 3 },
        Scale { dst: 4, a: (1.0 / bias2.sqrt()) as f32, x: 4 },
        AddScalar { dst: 4, x: 4, s: group.eps },
        Div { dst: 4, x: 2, y: 4 },
        Axpby { dst: 0, a: shrink, x: 0, b: alpha, y: 4 },
    ]);
    UpdateProgram { tensors: 4, ops, writes: vec![0, 2, 3] }
}

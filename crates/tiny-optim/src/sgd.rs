//! `Sgd`: the chapter's stochastic gradient descent, with PyTorch's momentum and Nesterov.

use std::collections::HashMap;

use tiny_nn::Parameter;
use tiny_tensor::{UpdateOp, UpdateProgram, no_grad};

use crate::core::{Core, ParamState};
use crate::fused::{settle, update_by_key};
use crate::group::check_groups;
use crate::{Optimizer, OptimizerState, ParamGroup, Result};

/// Stochastic gradient descent with PyTorch's semantics.
///
/// With gradient `g`, weight decay `wd` and momentum `m`, each step computes `d = g + wd * p` (the
/// chapter's coupled weight decay), then, when `m > 0`, the buffer `b = m * b + (1 - dampening) * d`
/// (`b = d` on the first step) and replaces `d` by `b`, or by `d + m * b` with Nesterov. Finally
/// `p -= lr * d`, all in one pass over the parameter (tiny-tensor's fused `foreach_update_`).
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
            step_group(group, state)?;
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

/// One SGD step of every parameter of `group` that has a gradient, as one fused `foreach_update_` over
/// `(p, g, momentum buffer)` (see [`program`]): each element is read and written once, and on a GPU the whole
/// group is one kernel launch instead of three or four per parameter. Momentum buffers are created at the
/// first step with momentum, and then carry over; parameters whose buffer is new take a call of their own.
fn step_group(group: &ParamGroup, state: &mut HashMap<usize, ParamState>) -> Result<()> {
    let with_momentum = group.momentum != 0.0;
    let mut todo = Vec::new();
    for p in &group.params {
        let Some(g) = p.grad() else { continue };
        let st = state.entry(p.id()).or_default();
        let first = st.buffers.is_empty();
        if with_momentum && first {
            st.buffers = vec![p.zeros_like()?];
        }
        todo.push((p, g, first));
    }
    let (done, result) = {
        let items: Vec<_> = todo
            .iter()
            .map(|(p, g, first)| {
                let mut tensors = vec![p.tensor(), g];
                tensors.extend(state[&p.id()].buffers.first().filter(|_| with_momentum));
                ((p.device(), with_momentum && *first), tensors)
            })
            .collect();
        update_by_key(&items, |(_, first)| program(group, first))
    };
    // A step that did not happen leaves no new buffer behind.
    settle(state, todo.iter().map(|(p, _, first)| (p.id(), *first)), &done);
    Ok(result?)
}

/// SGD as an update program over `(p, g)`, or `(p, g, b)` with momentum, in the float-op order of
/// tiny-tensor's former fused `sgd_update_` kernel (so that results are the same to the bit): `d = g + wd * p`;
/// `b = m * b + (1 - dampening) * d` (`b = d` when the buffer is `first`); `d = d + m * b` with
/// Nesterov, else `d = b`; `p = p - lr * d`, written `p + (-lr) * d`, which rounds the same.
fn program(group: &ParamGroup, first: bool) -> UpdateProgram {
    use UpdateOp::Axpby;
    let (lr, m) = (group.lr, group.momentum);
    // Registers: 0 the parameter, 1 the gradient and then the step `d`, 2 the momentum buffer.
    let mut ops = vec![Axpby { dst: 1, a: 1.0, x: 1, b: group.weight_decay, y: 0 }];
    if m == 0.0 {
        ops.push(Axpby { dst: 0, a: 1.0, x: 0, b: -lr, y: 1 });
        return UpdateProgram { tensors: 2, ops, writes: vec![0] };
    }
    ops.push(if first {
        UpdateOp::Copy { dst: 2, x: 1 }
    } else {
        Axpby { dst: 2, a: m, x: 2, b: 1.0 - group.dampening, y: 1 }
    });
    let d = if group.nesterov {
        ops.push(Axpby { dst: 1, a: 1.0, x: 1, b: m, y: 2 });
        1
    } else {
        2
    };
    ops.push(Axpby { dst: 0, a: 1.0, x: 0, b: -lr, y: d });
    UpdateProgram { tensors: 3, ops, writes: vec![0, 2] }
}

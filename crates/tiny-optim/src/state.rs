//! `OptimizerState`: an optimizer's hyper-parameters and per-parameter state as plain data.

use tiny_tensor::Tensor;

use crate::ParamGroup;

/// Everything needed to resume an optimizer: what `Optimizer::state_dict` returns and
/// `Optimizer::load_state_dict` takes. It is plain data so that a checkpoint can store `tensors` as
/// safetensors entries and the rest as string metadata (see `to_metadata`).
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// Which optimizer wrote it: `"sgd"`, `"adam"` or `"adamw"`.
    pub kind: String,
    /// How many times `step` has run.
    pub step: u64,
    /// The hyper-parameters and parameter shapes of each group, in order.
    pub groups: Vec<GroupState>,
    /// The state tensors, named `"{group}.{param}.{name}"` such as `"0.3.momentum_buffer"` or
    /// `"1.0.exp_avg_sq"`. A parameter that has no state yet has no entries.
    pub tensors: Vec<(String, Tensor)>,
}

/// The numbers saved for one parameter group: its hyper-parameters (as in `ParamGroup`) and, per
/// parameter, its shape and how many updates it has received.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    /// The learning rate.
    pub lr: f32,
    /// SGD's momentum or Adam's `beta1`.
    pub momentum: f32,
    /// The weight decay.
    pub weight_decay: f32,
    /// SGD's dampening.
    pub dampening: f32,
    /// Whether SGD uses Nesterov momentum.
    pub nesterov: bool,
    /// Adam's `beta2`.
    pub beta2: f32,
    /// Adam's `eps`.
    pub eps: f32,
    /// The shape of each parameter, to check that a state fits the optimizer it is loaded into.
    pub param_shapes: Vec<Vec<usize>>,
    /// How many updates each parameter has received (Adam's bias correction depends on it; a
    /// parameter skipped for lack of a gradient does not count the step).
    pub param_steps: Vec<u64>,
}

impl GroupState {
    /// The numbers of `group`, with the per-parameter step counts `param_steps`.
    pub(crate) fn of(group: &ParamGroup, param_steps: Vec<u64>) -> Self {
        GroupState {
            lr: group.lr,
            momentum: group.momentum,
            weight_decay: group.weight_decay,
            dampening: group.dampening,
            nesterov: group.nesterov,
            beta2: group.beta2,
            eps: group.eps,
            param_shapes: group.params.iter().map(|p| p.shape().to_vec()).collect(),
            param_steps,
        }
    }

    /// Copies the hyper-parameters into `group`, leaving its parameters alone.
    pub(crate) fn apply_to(&self, group: &mut ParamGroup) {
        group.lr = self.lr;
        group.momentum = self.momentum;
        group.weight_decay = self.weight_decay;
        group.dampening = self.dampening;
        group.nesterov = self.nesterov;
        group.beta2 = self.beta2;
        group.eps = self.eps;
    }
}

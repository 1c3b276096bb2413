//! The `Optimizer` trait: what the learner, the schedulers and the LR finder drive.

use crate::{OptimizerState, ParamGroup, Result};

/// An optimizer, the chapter's `SGD` generalised: it owns parameter groups and the per-parameter state
/// (momentum buffers, Adam moments), and updates the parameters in place from their gradients.
///
/// The trait is object safe; the learner holds a `Box<dyn Optimizer>`. Everything past `step`,
/// `param_groups` and the state methods has a default built on `param_groups`.
pub trait Optimizer: Send {
    /// Updates every parameter that has a gradient, in place and without recording a graph.
    /// Parameters without a gradient (frozen, or unused by the last forward) are skipped.
    fn step(&mut self) -> Result<()>;

    /// The parameter groups with their hyper-parameters.
    fn param_groups(&self) -> &[ParamGroup];

    /// The parameter groups, for changing one group's hyper-parameters (discriminative learning rates).
    fn param_groups_mut(&mut self) -> &mut [ParamGroup];

    /// A snapshot of the hyper-parameters and the per-parameter state, for checkpoints. The tensors
    /// are copies, so later steps do not change a saved state.
    fn state_dict(&self) -> Result<OptimizerState>;

    /// Restores a snapshot taken from an optimizer of the same kind over parameters of the same
    /// shapes, hyper-parameters included. Nothing changes when it fails; the error names the first
    /// group, parameter or entry that does not fit.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;

    /// Cuts the one parameter group of a new optimizer into consecutive groups of `sizes` parameters, each with
    /// the group's hyper-parameters: how a learner gives a model's body and head their own learning rates (fastai's
    /// splitter) with an `opt_func` that sees one flat list. Per-parameter state follows the parameters.
    ///
    /// # Errors
    /// [`OptimError::BadSplit`](crate::OptimError::BadSplit) when there is more than one group already or the
    /// sizes do not add up to its parameters; the optimizer is unchanged then.
    fn split_groups(&mut self, sizes: &[usize]) -> Result<()>;

    /// Forgets every parameter's gradient, like PyTorch's `zero_grad(set_to_none=True)`.
    fn zero_grad(&self) {
        for group in self.param_groups() {
            for p in &group.params {
                p.zero_grad();
            }
        }
    }

    /// The learning rate of the first group.
    fn lr(&self) -> f32 {
        self.param_groups().first().map_or(0.0, |g| g.lr)
    }

    /// Sets the learning rate of every group (use `param_groups_mut` for one group).
    fn set_lr(&mut self, lr: f32) {
        for group in self.param_groups_mut() {
            group.lr = lr;
        }
    }

    /// The momentum of the first group: SGD's momentum or Adam's `beta1`.
    fn momentum(&self) -> f32 {
        self.param_groups().first().map_or(0.0, |g| g.momentum)
    }

    /// Sets the momentum (SGD) or `beta1` (Adam) of every group, as fastai's momentum cycling does.
    fn set_momentum(&mut self, momentum: f32) {
        for group in self.param_groups_mut() {
            group.momentum = momentum;
        }
    }

    /// What changes in the update from one step to the next besides the gradients and the state buffers, such
    /// as Adam's bias correction by the step count; `None` (the default, and SGD's) when a step recorded once
    /// (a CUDA graph) may be replayed for every later one.
    fn varies_per_step(&self) -> Option<&'static str> {
        None
    }
}

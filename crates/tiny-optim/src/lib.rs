//! tiny-optim: the optimizers that train tiny's models, `Sgd` (momentum, Nesterov), `Adam` and `AdamW`.
//!
//! Every optimizer implements the object-safe [`Optimizer`] trait that the learner, the schedulers
//! and the LR finder drive: `step`, `zero_grad`, the learning rate and momentum of each
//! [`ParamGroup`], and a [`OptimizerState`] snapshot for checkpoints. Updates follow PyTorch's
//! `torch.optim` formulas and run under `no_grad` as programs for tiny-tensor's fused in-place
//! `foreach_update_` (one pass over memory on the CPU, one kernel launch for a group's dense parameters on
//! a GPU), so a step records no graph and allocates no temporary tensors.
//!
//! One step of the chapter's SGD, `p -= lr * p.grad`:
//!
//! ```
//! use tiny_nn::Parameter;
//! use tiny_optim::{Optimizer, Sgd};
//! use tiny_tensor::Tensor;
//!
//! let w = Parameter::new(Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap());
//! let mut opt = Sgd::new(vec![w.clone()], 0.1);
//! // loss = sum(w * w), so the gradient is 2w.
//! w.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
//! opt.step().unwrap();
//! opt.zero_grad();
//! assert_eq!(w.to_vec(), vec![0.8, -1.6]);
//! assert!(w.grad().is_none());
//! ```

mod adam;
mod core;
mod error;
mod fused;
mod group;
mod metadata;
mod optimizer;
mod sgd;
mod state;

pub use adam::{Adam, AdamW};
pub use error::{OptimError, Result};
pub use group::ParamGroup;
pub use optimizer::Optimizer;
pub use sgd::Sgd;

/// The optimizers and their trait, in one import: `use tiny_optim::prelude::*;`.
pub mod prelude {
    pub use crate::{Adam, AdamW, OptimError, Optimizer, Sgd};
}
pub use state::{GroupState, OptimizerState};

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

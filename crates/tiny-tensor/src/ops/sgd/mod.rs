//! `sgd_update_`: one SGD step of a parameter in place, fused into a single pass (one kernel on a GPU), and
//! `sgd_update_all_` for many parameters at once (one kernel for all of them on a GPU).

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::backend;
use crate::{Result, Tensor, TensorError};

/// The SGD kernels each backend provides; `mod.rs` checked shapes, devices and aliasing.
pub(crate) trait SgdKernels {
    /// In place, one SGD step of `p` from `g`, with an optional momentum buffer.
    fn sgd_update(&self, p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, step: &SgdStep) -> Result<()>;
    /// One SGD step of each `(p, g, momentum buffer, first)`.
    fn sgd_update_all(&self, items: &[(&Tensor, &Tensor, Option<&Tensor>, bool)], step: &SgdStep) -> Result<()>;
}

/// The hyper-parameters of one fused SGD step, [`Tensor::sgd_update_`], with PyTorch's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (the buffer, when one is given, is updated whatever its value).
    pub momentum: f32,
    /// Dampening of the gradient added to the momentum buffer (after the first step).
    pub dampening: f32,
    /// Coupled (L2) weight decay, added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Whether the momentum buffer is new this step: it then takes the gradient as it is.
    pub first: bool,
}

impl Tensor {
    /// In place, one SGD step of this parameter from `grad`, reading and writing each element once (the
    /// chapter's `p -= lr * p.grad`, with PyTorch's momentum, dampening, Nesterov and weight decay):
    ///
    /// `d = grad + weight_decay * p`; with a `momentum_buffer` `b`, `b = momentum * b + (1 - dampening) * d`
    /// (`b = d` when `first`) and `d = b`, or `d = d + momentum * b` with Nesterov; then `p -= lr * d`.
    ///
    /// The three tensors must have the same shape and device, with any strides. Records no graph.
    ///
    /// ```
    /// use tiny_tensor::{SgdStep, Tensor};
    /// let p = Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap();
    /// let g = Tensor::from_vec(vec![0.5, 1.0], &[2]).unwrap();
    /// p.sgd_update_(&g, None, &SgdStep { lr: 0.1, ..SgdStep::default() }).unwrap();
    /// assert_eq!(p.to_vec(), vec![0.95, -2.1]);
    /// ```
    pub fn sgd_update_(&self, grad: &Tensor, momentum_buffer: Option<&Tensor>, step: &SgdStep) -> Result<()> {
        let grad = check(self, grad, momentum_buffer)?;
        backend::on(self)?.sgd_update(self, &grad, momentum_buffer, step)
    }
}

/// One parameter's part in [`sgd_update_all_`].
#[derive(Debug, Clone, Copy)]
pub struct SgdParam<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// Its momentum buffer, updated in place; `None` without momentum.
    pub momentum_buffer: Option<&'a Tensor>,
    /// Whether the buffer is new this step (it then takes the gradient as it is).
    pub first: bool,
}

/// In place, one SGD step of every parameter in `params` with the hyper-parameters of `step` (whose `first` is
/// ignored: each parameter carries its own). The same as [`Tensor::sgd_update_`] on each, but on a GPU a
/// single kernel launch updates every parameter stored densely with its gradient and buffer in its memory
/// order (row-major, or a channels-last conv weight), as PyTorch's multi-tensor SGD does.
pub fn sgd_update_all_(params: &[SgdParam<'_>], step: &SgdStep) -> Result<()> {
    let grads = params.iter().map(|p| check(p.param, p.grad, p.momentum_buffer)).collect::<Result<Vec<_>>>()?;
    let items: Vec<_> = params.iter().zip(&grads).map(|(p, g)| (p.param, g, p.momentum_buffer, p.first)).collect();
    let Some(first) = params.first() else { return Ok(()) };
    if params.iter().all(|p| p.param.device() == first.param.device()) {
        return backend::on(first.param)?.sgd_update_all(&items, step);
    }
    // Parameters on several devices: each on its own.
    for &(p, g, b, first) in &items {
        backend::on(p)?.sgd_update(p, g, b, &SgdStep { first, ..*step })?;
    }
    Ok(())
}

/// Checks that `grad` and `buffer` fit `param` (shape and device), and returns the gradient to use: a copy
/// when it shares memory with the tensors it is read alongside. `sgd_update_all_` checks every parameter
/// before it updates any, so a bad one leaves them all as they were.
fn check(param: &Tensor, grad: &Tensor, buffer: Option<&Tensor>) -> Result<Tensor> {
    param.check_writable("sgd_update_")?;
    if let Some(b) = buffer {
        b.check_writable("sgd_update_")?;
    }
    for other in std::iter::once(grad).chain(buffer) {
        if other.device() != param.device() {
            return Err(TensorError::DeviceMismatch { op: "sgd_update_", lhs: param.device(), rhs: other.device() });
        }
        if other.shape() != param.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "sgd_update_",
                lhs: param.shape().to_vec(),
                rhs: other.shape().to_vec(),
            });
        }
    }
    if buffer.is_some_and(|b| b.shares_storage(param)) {
        return Err(TensorError::InvalidArgument {
            op: "sgd_update_",
            msg: "the momentum buffer shares memory with the parameter".into(),
        });
    }
    let shares = grad.shares_storage(param) || buffer.is_some_and(|b| grad.shares_storage(b));
    if shares { grad.contiguous_copy() } else { Ok(grad.clone()) }
}

//! `Parameter`: a trainable tensor, shared between the module that computes with it and the optimizer.

use std::ops::Deref;

use tiny_tensor::Tensor;

/// A tensor marked as trainable, the chapter's `Parameter`. Cloning shares the data: the optimizer's
/// clone updates in place exactly what the module computes with.
#[derive(Clone, Debug)]
pub struct Parameter(Tensor);

impl Parameter {
    /// Wraps `t` as a leaf that requires grad.
    pub fn new(t: Tensor) -> Self {
        Parameter(t.detach().set_requires_grad(true))
    }

    /// The underlying tensor handle.
    pub fn tensor(&self) -> &Tensor {
        &self.0
    }
}

impl Deref for Parameter {
    type Target = Tensor;

    fn deref(&self) -> &Tensor {
        &self.0
    }
}

impl From<Tensor> for Parameter {
    fn from(t: Tensor) -> Self {
        Parameter::new(t)
    }
}

//! `Linear`: the chapter's fully connected layer, `x @ w.t() + b`.

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, NnError, Parameter, Result, init};

/// A fully connected layer with weight `w` `[nf, ni]` (xavier-normal) and bias `b` `[nf]` (zeros), as in
/// the chapter.
#[derive(Debug)]
pub struct Linear {
    /// The weight, `[out_features, in_features]`.
    pub w: Parameter,
    /// The bias, `[out_features]`.
    pub b: Parameter,
    hooks: Hooks,
}

impl Linear {
    /// A layer from `ni` to `nf` features.
    pub fn new(ni: usize, nf: usize) -> Result<Self> {
        let w = Parameter::new(init::xavier_normal(&[nf, ni])?);
        Ok(Linear { w, b: Parameter::new(Tensor::zeros(&[nf])), hooks: Hooks::default() })
    }
}

impl Module for Linear {
    /// `x @ w.t() + b`; the transpose is a free strided view.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 2 || x.shape()[1] != self.w.shape()[1] {
            return Err(NnError::InvalidArgument {
                layer: "Linear",
                msg: format!("expects [batch, {}] input, got {:?}", self.w.shape()[1], x.shape()),
            });
        }
        Ok(x.matmul(&self.w.t()?)?.add(&self.b)?)
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        vec![("w".to_string(), self.w.clone()), ("b".to_string(), self.b.clone())]
    }

    with_hooks!();
}

//! `Linear`: the chapter's fully connected layer, `x @ w.t() + b`.

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, NnError, Parameter, Result, init};

/// A fully connected layer with weight `w` `[nf, ni]` (xavier-normal) and bias `b` `[nf]` (zeros), as in
/// the chapter; [`Linear::nn`] builds PyTorch's `nn.Linear` instead.
#[derive(Debug)]
pub struct Linear {
    /// The weight, `[out_features, in_features]`.
    pub w: Parameter,
    /// The bias, `[out_features]`.
    pub b: Parameter,
    /// The state_dict names of the weight and the bias: the chapter's `w` and `b`, or `weight` and `bias`.
    names: [&'static str; 2],
    hooks: Hooks,
}

impl Linear {
    /// The chapter's layer from `ni` to `nf` features: parameters `w` (xavier-normal) and `b` (zeros).
    pub fn new(ni: usize, nf: usize) -> Result<Self> {
        let w = Parameter::new(init::xavier_normal(&[nf, ni])?);
        Ok(Linear { w, b: Parameter::new(Tensor::zeros(&[nf])), names: ["w", "b"], hooks: Hooks::default() })
    }

    /// PyTorch's `nn.Linear(ni, nf)`: parameters named `weight` and `bias`, both uniform in
    /// `[-1/sqrt(ni), 1/sqrt(ni))` (its default `kaiming_uniform_(a=sqrt(5))` comes to that bound).
    pub fn nn(ni: usize, nf: usize) -> Result<Self> {
        let bound = 1.0 / (ni.max(1) as f32).sqrt();
        let w = Parameter::new(init::uniform(&[nf, ni], bound)?);
        let b = Parameter::new(init::uniform(&[nf], bound)?);
        Ok(Linear { w, b, names: ["weight", "bias"], hooks: Hooks::default() })
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
        vec![(self.names[0].to_string(), self.w.clone()), (self.names[1].to_string(), self.b.clone())]
    }

    with_hooks!();
}

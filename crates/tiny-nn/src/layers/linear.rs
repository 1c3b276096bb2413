//! `Linear`: the chapter's fully connected layer, `x @ w.t() + b`.

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, NnError, Parameter, Result, init};

/// A fully connected layer with weight `w` `[nf, ni]` (xavier-normal) and bias `b` `[nf]` (zeros), as in
/// the chapter; [`Linear::nn`] builds PyTorch's `nn.Linear` instead, and [`Linear::without_bias`] drops the bias
/// (`bias=False`).
#[derive(Debug)]
pub struct Linear {
    /// The weight, `[out_features, in_features]`.
    pub w: Parameter,
    /// The bias, `[out_features]`, if any.
    pub b: Option<Parameter>,
    /// The state_dict names of the weight and the bias: the chapter's `w` and `b`, or `weight` and `bias`.
    names: [&'static str; 2],
    hooks: Hooks,
}

impl Linear {
    /// The chapter's layer from `ni` to `nf` features: parameters `w` (xavier-normal) and `b` (zeros).
    pub fn new(ni: usize, nf: usize) -> Result<Self> {
        let w = Parameter::new(init::xavier_normal(&[nf, ni])?);
        Ok(Linear { w, b: Some(Parameter::new(Tensor::zeros(&[nf]))), names: ["w", "b"], hooks: Hooks::default() })
    }

    /// PyTorch's `nn.Linear(ni, nf)`: parameters named `weight` and `bias`, both uniform in
    /// `[-1/sqrt(ni), 1/sqrt(ni))` (its default `kaiming_uniform_(a=sqrt(5))` comes to that bound).
    pub fn nn(ni: usize, nf: usize) -> Result<Self> {
        let bound = 1.0 / (ni.max(1) as f32).sqrt();
        let w = Parameter::new(init::uniform(&[nf, ni], bound)?);
        let b = Some(Parameter::new(init::uniform(&[nf], bound)?));
        Ok(Linear { w, b, names: ["weight", "bias"], hooks: Hooks::default() })
    }

    /// The same layer without its bias, PyTorch's `bias=False`.
    pub fn without_bias(mut self) -> Self {
        self.b = None;
        self
    }
}

impl Module for Linear {
    /// `x @ w.t() + b` (or `x @ w.t()`); the transpose is a free strided view.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 2 || x.shape()[1] != self.w.shape()[1] {
            return Err(NnError::InvalidArgument {
                layer: "Linear",
                msg: format!("expects [batch, {}] input, got {:?}", self.w.shape()[1], x.shape()),
            });
        }
        let y = x.matmul(&self.w.t()?)?;
        Ok(match &self.b {
            Some(b) => y.add(b)?,
            None => y,
        })
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        let mut p = vec![(self.names[0].to_string(), self.w.clone())];
        p.extend(self.b.iter().map(|b| (self.names[1].to_string(), b.clone())));
        p
    }

    with_hooks!();
}

//! `Conv2d` and the chapter's `ConvLayer` (3x3 conv, padding 1, optional ReLU).

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, Parameter, Result, init};

/// Conv weights stored channels-last (`[f, kh, kw, c]` in memory, still indexed `[f, c, kh, kw]`), the
/// order the convolution kernels read: the forward needs no reordered copy of them, and the backward returns
/// the weight gradient in the same order, so neither copies it each step.
fn channels_last(w: Tensor) -> Result<Tensor> {
    Ok(w.to_channels_last()?.detach())
}

/// A 2-D convolution with square kernels, like `nn.Conv2d` (parameters `weight` `[f, c, k, k]` and
/// optional `bias` `[f]`), initialised kaiming-normal with `mode="fan_out"` as torchvision's resnet.
#[derive(Debug)]
pub struct Conv2d {
    /// The filters, `[out_channels, in_channels, k, k]`.
    pub weight: Parameter,
    /// One bias per output channel, if any.
    pub bias: Option<Parameter>,
    /// The step between windows.
    pub stride: usize,
    /// The zeros added on each side.
    pub padding: usize,
    hooks: Hooks,
}

impl Conv2d {
    /// A `kernel x kernel` convolution from `ni` to `nf` channels.
    pub fn new(ni: usize, nf: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Result<Self> {
        let weight = Parameter::new(channels_last(init::kaiming_normal_fan_out(&[nf, ni, kernel, kernel])?)?);
        let bias = bias.then(|| Parameter::new(Tensor::zeros(&[nf])));
        Ok(Conv2d { weight, bias, stride, padding, hooks: Hooks::default() })
    }
}

impl Conv2d {
    /// [`Conv2d::new`] without a bias and initialised kaiming-normal with `mode="fan_in"` (std `sqrt(2 / fan_in)`),
    /// as fastai's `init_cnn` leaves every convolution of its xresnet.
    pub fn kaiming_fan_in(ni: usize, nf: usize, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let weight = Parameter::new(channels_last(init::kaiming_normal(&[nf, ni, kernel, kernel])?)?);
        Ok(Conv2d { weight, bias: None, stride, padding, hooks: Hooks::default() })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.conv2d(&self.weight, self.bias.as_deref(), self.stride, self.padding)?)
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }

    with_hooks!();
}

/// The chapter's `ConvLayer`: a 3x3 convolution with padding 1, then ReLU when `act`. Weights are
/// kaiming-normal when followed by ReLU, else xavier-normal; the bias starts at zero. Parameters are
/// named `w` and `b` as in the chapter.
#[derive(Debug)]
pub struct ConvLayer {
    /// The filters, `[nf, ni, 3, 3]`.
    pub w: Parameter,
    /// The bias `[nf]`, if any.
    pub b: Option<Parameter>,
    /// The step between windows.
    pub stride: usize,
    /// Whether ReLU follows the convolution.
    pub act: bool,
    hooks: Hooks,
}

impl ConvLayer {
    /// `ConvLayer(ni, nf, stride, bias, act)` as in the chapter.
    pub fn new(ni: usize, nf: usize, stride: usize, bias: bool, act: bool) -> Result<Self> {
        let shape = [nf, ni, 3, 3];
        let w = Parameter::new(channels_last(if act {
            init::kaiming_normal(&shape)?
        } else {
            init::xavier_normal(&shape)?
        })?);
        let b = bias.then(|| Parameter::new(Tensor::zeros(&[nf])));
        Ok(ConvLayer { w, b, stride, act, hooks: Hooks::default() })
    }
}

impl Module for ConvLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // With the activation, bias and ReLU run fused inside the convolution.
        if self.act {
            Ok(x.conv2d_relu(&self.w, self.b.as_deref(), self.stride, 1)?)
        } else {
            Ok(x.conv2d(&self.w, self.b.as_deref(), self.stride, 1)?)
        }
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        let mut p = vec![("w".to_string(), self.w.clone())];
        p.extend(self.b.iter().map(|b| ("b".to_string(), b.clone())));
        p
    }

    with_hooks!();
}

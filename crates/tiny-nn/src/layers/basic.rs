//! Parameter-free layers: `ReLU`, `Flatten`, the chapter's `AdaptivePool`, `MaxPool2d`, and `Lambda`.

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, Result};

/// `max(x, 0)` as a layer.
#[derive(Debug, Default)]
pub struct ReLU {
    hooks: Hooks,
}

impl ReLU {
    /// A ReLU layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.relu()?)
    }

    with_hooks!();
}

/// Flattens everything after the batch dimension: `[n, ...] -> [n, rest]`.
#[derive(Debug, Default)]
pub struct Flatten {
    hooks: Hooks,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if x.rank() <= 2 { x.clone() } else { x.flatten(1, -1)? })
    }

    with_hooks!();
}

/// The chapter's `AdaptivePool`: the mean over height and width, `[n, c, h, w] -> [n, c]`
/// (`nn.AdaptiveAvgPool2d(1)` followed by a flatten).
#[derive(Debug, Default)]
pub struct AdaptivePool {
    hooks: Hooks,
}

impl AdaptivePool {
    /// An adaptive average pool to one pixel, flattened.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for AdaptivePool {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.mean(&[2, 3], false)?)
    }

    with_hooks!();
}

/// Max pooling over square windows, like `nn.MaxPool2d`.
#[derive(Debug)]
pub struct MaxPool2d {
    /// Window size, stride and padding.
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    hooks: Hooks,
}

impl MaxPool2d {
    /// A max pool with the given window, stride and padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        MaxPool2d { kernel, stride, padding, hooks: Hooks::default() }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.max_pool2d(self.kernel, self.stride, self.padding)?)
    }

    with_hooks!();
}

/// The function inside a `Lambda` layer.
type LambdaFn = Box<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// Wraps a function of one tensor as a layer, like fastai's `Lambda`.
pub struct Lambda {
    f: LambdaFn,
    hooks: Hooks,
}

impl std::fmt::Debug for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lambda")
    }
}

impl Lambda {
    /// A layer that applies `f`.
    pub fn new(f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static) -> Self {
        Lambda { f: Box::new(f), hooks: Hooks::default() }
    }
}

impl Module for Lambda {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (self.f)(x)
    }

    with_hooks!();
}

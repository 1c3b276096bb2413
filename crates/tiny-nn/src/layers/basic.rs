//! Parameter-free layers: `ReLU`, `Flatten`, the chapter's `AdaptivePool`, fastai's `AdaptiveConcatPool2d`, `MaxPool2d`,
//! `AvgPool2d`, and `Lambda`.

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, NnError, Result};

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

    fn is_unwatched_relu(&self) -> bool {
        self.hooks.is_empty()
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

/// fastai's `AdaptiveConcatPool2d`: the maximum and the mean over height and width side by side,
/// `[n, c, h, w] -> [n, 2c, 1, 1]` (the maxima first), so the head sees both the strongest and the average response.
/// The maximum's gradient goes to the largest element of each map, shared equally between ties (PyTorch's
/// `adaptive_max_pool2d` gives all of it to one of them; the two agree unless a map holds equal maxima).
#[derive(Debug, Default)]
pub struct AdaptiveConcatPool2d {
    hooks: Hooks,
}

impl AdaptiveConcatPool2d {
    /// A concat pool to one pixel.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for AdaptiveConcatPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 {
            return Err(NnError::InvalidArgument {
                layer: "AdaptiveConcatPool2d",
                msg: format!("expects [n, c, h, w] input, got {:?}", x.shape()),
            });
        }
        Ok(Tensor::cat(&[&x.max(&[2, 3], true)?, &x.mean(&[2, 3], true)?], 1)?)
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

/// Average pooling over square windows, like `nn.AvgPool2d` (padding counted as zeros). With `ceil_mode` (fastai's
/// xresnet shortcut pools with it) a window that would hang over the input's edge is refused rather than computed:
/// tiny's pooling has no such windows, so such an input is an error that names its size.
#[derive(Debug)]
pub struct AvgPool2d {
    /// Window size, stride and padding.
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// PyTorch's `ceil_mode`, allowed only where it changes nothing.
    pub ceil_mode: bool,
    hooks: Hooks,
}

impl AvgPool2d {
    /// An average pool with the given window, stride and padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        AvgPool2d { kernel, stride, padding, ceil_mode: false, hooks: Hooks::default() }
    }

    /// The same pool with PyTorch's `ceil_mode=True`.
    pub fn ceil_mode(mut self) -> Self {
        self.ceil_mode = true;
        self
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if self.ceil_mode && x.rank() == 4 && s > 0 {
            // A map smaller than the window hangs over too (PyTorch's ceil_mode pools it into one partial window).
            let hangs = |len: usize| (len + 2 * p).checked_sub(k).is_none_or(|r| r % s != 0);
            if hangs(x.shape()[2]) || hangs(x.shape()[3]) {
                return Err(NnError::InvalidArgument {
                    layer: "AvgPool2d",
                    msg: format!(
                        "with ceil_mode on a {}x{} input a window hangs over the edge, which tiny does not compute; \
                         use an input size that keeps every pooled map even (any multiple of 32 does for xresnet)",
                        x.shape()[2],
                        x.shape()[3]
                    ),
                });
            }
        }
        Ok(x.avg_pool2d(k, s, p)?)
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

//! `BatchNorm2d` from scratch (batch statistics in training, running statistics in evaluation), and `BatchNorm1d`.

use std::sync::atomic::{AtomicBool, Ordering};

use tiny_tensor::{RunningStats, Tensor};

use super::with_hooks;
use crate::{Hooks, Module, NnError, Parameter, Result};

/// Normalises each channel of an NCHW batch, then scales and shifts it, like `nn.BatchNorm2d`.
///
/// In training mode it uses the batch's mean and (biased) variance over `n, h, w` and updates the
/// running statistics: `running = (1 - momentum) * running + momentum * batch` (with the unbiased
/// variance) and counts the batch in `num_batches_tracked`. In evaluation mode it uses the running statistics
/// instead. Its state_dict entries are PyTorch's: `weight`, `bias`, `running_mean`, `running_var` and
/// `num_batches_tracked`.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// The learnable scale, `[c]`, starting at 1.
    pub weight: Parameter,
    /// The learnable shift, `[c]`, starting at 0.
    pub bias: Parameter,
    /// The running mean, `[c]` (a buffer).
    pub running_mean: Tensor,
    /// The running variance, `[c]` (a buffer).
    pub running_var: Tensor,
    /// The number of training batches seen, a one-element buffer (an int64 in PyTorch's and in saved files).
    pub num_batches_tracked: Tensor,
    /// The weight of the newest batch in the running statistics.
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
    training: AtomicBool,
    hooks: Hooks,
}

impl BatchNorm2d {
    /// A batchnorm over `c` channels with PyTorch's defaults (momentum 0.1, eps 1e-5), in training mode.
    pub fn new(c: usize) -> Self {
        BatchNorm2d {
            weight: Parameter::new(Tensor::ones(&[c])),
            bias: Parameter::new(Tensor::zeros(&[c])),
            running_mean: Tensor::zeros(&[c]),
            running_var: Tensor::ones(&[c]),
            num_batches_tracked: Tensor::scalar(0.0),
            momentum: 0.1,
            eps: 1e-5,
            training: AtomicBool::new(true),
            hooks: Hooks::default(),
        }
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// An error unless `x` is `[n, c, h, w]` with this layer's `c`.
    fn check(&self, x: &Tensor) -> Result<()> {
        let c = self.weight.shape()[0];
        if x.rank() != 4 || x.shape()[1] != c {
            return Err(NnError::InvalidArgument {
                layer: "BatchNorm2d",
                msg: format!("expects [n, {c}, h, w] input, got {:?}", x.shape()),
            });
        }
        Ok(())
    }

    /// The running statistics that a training batch updates.
    fn running(&self) -> RunningStats<'_> {
        RunningStats {
            mean: &self.running_mean,
            var: &self.running_var,
            momentum: self.momentum,
            num_batches_tracked: Some(&self.num_batches_tracked),
        }
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        let per_channel = [1, self.weight.shape()[0], 1, 1];
        if self.is_training() {
            // The fused op: one statistics pass, one small per-channel pass that also updates the running
            // statistics, one normalise pass, and a two-pass backward.
            return Ok(x.batch_norm_running(&self.weight, &self.bias, self.eps, self.running())?.0);
        }
        let std = self.running_var.add_scalar(self.eps)?.sqrt()?.reshape(&per_channel)?;
        let normed = x.sub(&self.running_mean.reshape(&per_channel)?)?.div(&std)?;
        Ok(normed.mul(&self.weight.reshape(&per_channel)?)?.add(&self.bias.reshape(&per_channel)?)?)
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        vec![("weight".to_string(), self.weight.clone()), ("bias".to_string(), self.bias.clone())]
    }

    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
            ("num_batches_tracked".to_string(), self.num_batches_tracked.clone()),
        ]
    }

    fn set_own_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    fn own_training(&self) -> Option<bool> {
        Some(self.is_training())
    }

    /// `self.call(x)?.relu()`, the batchnorm-ReLU pair of a resnet, as one op where it can be: in training mode
    /// with no forward hook on the layer, [`Tensor::batch_norm_running_relu`] gives the same values to the bit in
    /// one pass fewer each way. A hook sees the layer's own output, before the ReLU, so with one the two run apart,
    /// as they do in evaluation mode.
    fn call_relu(&self, x: &Tensor) -> Result<Tensor> {
        if !self.is_training() || !self.hooks.is_empty() {
            return Ok(self.call(x)?.relu()?);
        }
        self.check(x)?;
        Ok(x.batch_norm_running_relu(&self.weight, &self.bias, self.eps, self.running())?.0)
    }

    with_hooks!();
}

/// `nn.BatchNorm1d` on `[n, c]` features: [`BatchNorm2d`] over `n` values per channel (the `[n, c, 1, 1]` view),
/// with the same parameters, buffers, momentum and modes. fastai's head normalises its pooled features with it.
#[derive(Debug)]
pub struct BatchNorm1d {
    inner: BatchNorm2d,
    hooks: Hooks,
}

impl BatchNorm1d {
    /// A batchnorm over `c` features with PyTorch's defaults, in training mode.
    pub fn new(c: usize) -> Self {
        BatchNorm1d { inner: BatchNorm2d::new(c), hooks: Hooks::default() }
    }

    /// fastai's `BatchNorm(nf, ndim=1)`: weight 1 and bias 1e-3 (`_get_norm`), as its head's `LinBnDrop` builds it.
    pub fn fastai(c: usize) -> Self {
        let mut bn = BatchNorm1d::new(c);
        bn.inner.bias = Parameter::new(Tensor::full(&[c], 1e-3));
        bn
    }

    /// The 2-D batchnorm it runs, with its parameters and running statistics.
    pub fn inner(&self) -> &BatchNorm2d {
        &self.inner
    }
}

impl Module for BatchNorm1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.inner.weight.shape()[0];
        if x.rank() != 2 || x.shape()[1] != c {
            return Err(NnError::InvalidArgument {
                layer: "BatchNorm1d",
                msg: format!("expects [n, {c}] input, got {:?}", x.shape()),
            });
        }
        let n = x.shape()[0];
        Ok(self.inner.forward(&x.reshape(&[n, c, 1, 1])?)?.reshape(&[n, c])?)
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        self.inner.own_parameters()
    }

    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        self.inner.own_buffers()
    }

    fn set_own_training(&self, training: bool) {
        self.inner.set_own_training(training);
    }

    fn own_training(&self) -> Option<bool> {
        self.inner.own_training()
    }

    with_hooks!();
}

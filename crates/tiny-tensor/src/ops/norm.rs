//! `batch_norm`: training-mode batch normalisation as one fused op, forward and backward side by side.

use crate::backend;
use crate::{Result, Tensor, TensorError};

impl Tensor {
    /// Normalises each channel (dimension 1) of an NCHW tensor with the batch's mean and biased
    /// variance over `n, h, w`, then scales by `weight` and shifts by `bias` (both `[c]`). Returns the
    /// output and the batch mean and biased variance (for running statistics; not differentiable).
    ///
    /// Forward: `y = (x - mean) * invstd * w + b` with `invstd = 1 / sqrt(var + eps)`.
    /// Backward, with `xhat = (x - mean) * invstd` and `n` values per channel:
    /// `db = sum(dy)`, `dw = sum(dy * xhat)`, `dx = w * invstd * (dy - db / n - xhat * dw / n)`.
    pub fn batch_norm(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<(Tensor, Tensor, Tensor)> {
        self.batch_norm_impl(weight, bias, eps, None)
    }

    /// [`Tensor::batch_norm`] that also updates running statistics in place, as PyTorch's
    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum, eps)`:
    /// `running_mean = (1 - momentum) * running_mean + momentum * mean`, and `running_var` likewise with the
    /// unbiased batch variance `var * n / (n - 1)`, and `num_batches_tracked`, when given, goes up by one. The
    /// per-channel work (`invstd`, the affine map's scale and shift, the running statistics and the count) is one
    /// small kernel, not a dozen elementwise ops.
    ///
    /// ```
    /// use tiny_tensor::{RunningStats, Tensor};
    /// let x = Tensor::from_vec(vec![1.0, 3.0], &[2, 1, 1, 1]).unwrap();
    /// let (w, b) = (Tensor::ones(&[1]), Tensor::zeros(&[1]));
    /// let (rm, rv) = (Tensor::zeros(&[1]), Tensor::ones(&[1]));
    /// let count = Tensor::scalar(0.0);
    /// let running = RunningStats { mean: &rm, var: &rv, momentum: 0.1, num_batches_tracked: Some(&count) };
    /// x.batch_norm_running(&w, &b, 1e-5, running).unwrap();
    /// assert!((rm.item().unwrap() - 0.2).abs() < 1e-6); // 0.9 * 0 + 0.1 * 2
    /// assert!((rv.item().unwrap() - 1.1).abs() < 1e-6); // 0.9 * 1 + 0.1 * 2 (the unbiased variance)
    /// assert_eq!(count.item().unwrap(), 1.0);
    /// ```
    pub fn batch_norm_running(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        running: RunningStats<'_>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.batch_norm_impl(weight, bias, eps, Some(running))
    }

    fn batch_norm_impl(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        running: Option<RunningStats<'_>>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let s = self.shape();
        if s.len() != 4 || weight.shape() != [s[1]] || bias.shape() != [s[1]] {
            return Err(TensorError::ShapeMismatch { op: "batch_norm", lhs: s.to_vec(), rhs: weight.shape().to_vec() });
        }
        if let Some(r) = &running {
            r.check(self, weight, bias)?;
        }
        // One arrangement of the input serves the statistics, the normalisation and the backward.
        let xc = backend::channel_data(self)?;
        let count = s[0] * s[2] * s[3];
        let backend::BatchNormStats { mean, var, invstd, scale, shift } =
            backend::batch_norm_stats(&xc, &weight.detach(), &bias.detach(), eps, running, count)?;
        let out = backend::batch_norm_affine(&xc, &scale, &shift)?;
        let saved_mean = mean.clone();
        let out = Tensor::record(out, "batch_norm", &[self, weight, bias], move |g, _, x| {
            let (dx, dw, db) = backend::batch_norm_backward(g, &xc, &saved_mean, &invstd, &x[1])?;
            Ok(vec![
                x[0].requires_grad().then_some(dx),
                x[1].requires_grad().then_some(dw),
                x[2].requires_grad().then_some(db),
            ])
        });
        Ok((out, mean, var))
    }
}

/// The running statistics that [`Tensor::batch_norm_running`] updates in place: two contiguous `[c]` tensors
/// on the input's device, the weight of each new batch, and optionally the count of batches seen.
#[derive(Debug, Clone, Copy)]
pub struct RunningStats<'a> {
    /// The running mean, PyTorch's `running_mean`.
    pub mean: &'a Tensor,
    /// The running (unbiased) variance, PyTorch's `running_var`.
    pub var: &'a Tensor,
    /// The weight of the new batch's statistics, PyTorch's `momentum` (0.1 by default there).
    pub momentum: f32,
    /// A one-element counter on the input's device that goes up by one each call, PyTorch's
    /// `num_batches_tracked` (an int64 there; an f32 counts exactly to 2^24 batches).
    pub num_batches_tracked: Option<&'a Tensor>,
}

impl RunningStats<'_> {
    /// An error unless both statistics are contiguous `[c]` tensors on `x`'s device, apart from every other
    /// tensor of the op, so that they can be written while the others are read.
    fn check(&self, x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<()> {
        let c = weight.shape()[0];
        for t in [self.mean, self.var] {
            if t.shape() != [c] {
                return Err(TensorError::ShapeMismatch { op: "batch_norm", lhs: vec![c], rhs: t.shape().to_vec() });
            }
            if t.device() != x.device() {
                return Err(TensorError::DeviceMismatch { op: "batch_norm", lhs: x.device(), rhs: t.device() });
            }
            if !t.layout().is_contiguous() {
                return Err(TensorError::InvalidArgument {
                    op: "batch_norm",
                    msg: "running statistics must be contiguous to be updated in place".into(),
                });
            }
        }
        if let Some(n) = self.num_batches_tracked.filter(|n| n.numel() != 1 || n.device() != x.device()) {
            return Err(TensorError::InvalidArgument {
                op: "batch_norm",
                msg: format!(
                    "num_batches_tracked must be one element on {}, got {:?} on {}",
                    x.device(),
                    n.shape(),
                    n.device()
                ),
            });
        }
        let others = [self.var, x, weight, bias];
        let counter_shares = self
            .num_batches_tracked
            .is_some_and(|n| [self.mean, self.var, x, weight, bias].iter().any(|o| n.shares_storage(o)));
        if others.iter().any(|o| self.mean.shares_storage(o))
            || others[1..].iter().any(|o| self.var.shares_storage(o))
            || counter_shares
        {
            return Err(TensorError::InvalidArgument {
                op: "batch_norm",
                msg: "a running statistic shares memory with another tensor of the op".into(),
            });
        }
        Ok(())
    }
}

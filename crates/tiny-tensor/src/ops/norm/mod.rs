//! `batch_norm` and `batch_norm_relu`: training-mode batchnorm as one fused op, forward and backward side by side.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::Reads;
use crate::backend;
use crate::layout::Layout;
use crate::layout::format::{ChannelData, row_major};
use crate::{Result, Storage, Tensor, TensorError};

/// The training-mode batchnorm kernels each backend provides, over data arranged `[outer, c, inner]` row-major
/// (`dims`); the per-channel tensors are row-major `[c]`.
pub(crate) trait NormKernels {
    /// The batch's per-channel mean and biased variance, `invstd = 1 / sqrt(var + eps)` and the affine map's
    /// `scale = w * invstd` and `shift = b - mean * scale`, in that order, with the running statistics updated in
    /// place (`unbias` turns the batch variance unbiased for them).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_stats(
        &self,
        x: &Tensor,
        dims: (usize, usize, usize),
        w: &Tensor,
        b: &Tensor,
        eps: f32,
        running: Option<RunningStats<'_>>,
        unbias: f32,
    ) -> Result<[Storage; 5]>;
    /// `y = x * scale[c] + shift[c]`, then `relu(y)` when `relu`.
    fn batch_norm_affine(
        &self,
        x: &Tensor,
        dims: (usize, usize, usize),
        scale: &Tensor,
        shift: &Tensor,
        relu: bool,
    ) -> Result<Storage>;
    /// The gradients `(dx, dw, db)`, with `dy` in `x`'s arrangement. When a ReLU followed, `relu` holds the
    /// forward's `(scale, shift)` and `dy` first passes only where `x * scale + shift > 0`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        dims: (usize, usize, usize),
        mean: &Tensor,
        invstd: &Tensor,
        w: &Tensor,
        relu: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Storage, Storage, Storage)>;
}

/// A training batchnorm's per-channel values, all `[c]` (see [`NormKernels::batch_norm_stats`]).
struct BatchNormStats {
    mean: Tensor,
    var: Tensor,
    invstd: Tensor,
    scale: Tensor,
    shift: Tensor,
}

/// Wraps a `[c]` vector from either backend.
fn channel_vec(data: Storage, c: usize) -> Tensor {
    Tensor::from_storage(data, Layout::contiguous(&[c]))
}

/// The statistics of `x` and what follows from them, with the running statistics updated in place (`count`
/// values per channel make the variance unbiased). `Tensor::batch_norm_impl` checked the running statistics.
fn stats(
    x: &ChannelData,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
    running: Option<RunningStats<'_>>,
    count: usize,
) -> Result<BatchNormStats> {
    let be = backend::on_all("batch_norm", &x.data, &[w, b])?;
    let (w, b) = (row_major(w)?, row_major(b)?);
    let unbias = count as f32 / (count.max(2) - 1) as f32;
    let c = x.dims.1;
    let [mean, var, invstd, scale, shift] =
        be.batch_norm_stats(&x.data, x.dims, &w, &b, eps, running, unbias)?.map(|s| channel_vec(s, c));
    Ok(BatchNormStats { mean, var, invstd, scale, shift })
}

/// `y = x * scale[c] + shift[c]`, then `relu(y)` when `relu`, keeping the input's memory format.
fn affine(x: &ChannelData, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    let be = backend::on_all("batch_norm", &x.data, &[scale, shift])?;
    let (scale, shift) = (row_major(scale)?, row_major(shift)?);
    Ok(x.wrap(be.batch_norm_affine(&x.data, x.dims, &scale, &shift, relu)?))
}

/// The gradients `(dx, dw, db)` of training-mode batchnorm; when a ReLU followed, `relu` holds the forward's
/// `(scale, shift)`, from which the ReLU's mask is recomputed.
fn backward(
    dy: &Tensor,
    x: &ChannelData,
    mean: &Tensor,
    invstd: &Tensor,
    w: &Tensor,
    relu: Option<(&Tensor, &Tensor)>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let be = backend::on_all("batch_norm", &x.data, &[dy])?;
    let dyd = x.same_format(dy)?;
    let (mean, invstd, w) = (row_major(mean)?, row_major(invstd)?, row_major(w)?);
    let (dx, dw, db) = be.batch_norm_backward(&dyd, &x.data, x.dims, &mean, &invstd, &w, relu)?;
    Ok((x.wrap(dx), channel_vec(dw, x.dims.1), channel_vec(db, x.dims.1)))
}

impl Tensor {
    /// Normalises each channel (dimension 1) of an NCHW tensor with the batch's mean and biased
    /// variance over `n, h, w`, then scales by `weight` and shifts by `bias` (both `[c]`). Returns the
    /// output and the batch mean and biased variance (for running statistics; not differentiable).
    ///
    /// Forward: `y = (x - mean) * invstd * w + b` with `invstd = 1 / sqrt(var + eps)`.
    /// Backward, with `xhat = (x - mean) * invstd` and `n` values per channel:
    /// `db = sum(dy)`, `dw = sum(dy * xhat)`, `dx = w * invstd * (dy - db / n - xhat * dw / n)`.
    pub fn batch_norm(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<(Tensor, Tensor, Tensor)> {
        self.batch_norm_impl(weight, bias, eps, None, false)
    }

    /// `batch_norm(...)` followed by `relu()`, as one op: the same values to the bit, with one pass fewer each
    /// way and no intermediate tensor. The ReLU's gradient mask is recomputed in the backward from the input
    /// (`x * scale + shift > 0`, the forward's own expression), so nothing more is kept than for
    /// [`Tensor::batch_norm`]. Returns the output and the batch mean and biased variance.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 3.0], &[2, 1, 1, 1]).unwrap();
    /// let (w, b) = (Tensor::ones(&[1]), Tensor::zeros(&[1]));
    /// let (y, _, _) = x.batch_norm_relu(&w, &b, 0.0).unwrap();
    /// assert_eq!(y.to_vec(), [0.0, 1.0]); // relu([-1, 1])
    /// ```
    pub fn batch_norm_relu(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<(Tensor, Tensor, Tensor)> {
        self.batch_norm_impl(weight, bias, eps, None, true)
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
        self.batch_norm_impl(weight, bias, eps, Some(running), false)
    }

    /// [`Tensor::batch_norm_running`] followed by `relu()`, as one op (see [`Tensor::batch_norm_relu`]).
    pub fn batch_norm_running_relu(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        running: RunningStats<'_>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.batch_norm_impl(weight, bias, eps, Some(running), true)
    }

    fn batch_norm_impl(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
        running: Option<RunningStats<'_>>,
        relu: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let s = self.shape();
        if s.len() != 4 || weight.shape() != [s[1]] || bias.shape() != [s[1]] {
            return Err(TensorError::ShapeMismatch { op: "batch_norm", lhs: s.to_vec(), rhs: weight.shape().to_vec() });
        }
        if let Some(r) = &running {
            r.check(self, weight, bias)?;
        }
        // One arrangement of the input serves the statistics, the normalisation and the backward.
        let xc = ChannelData::new(self)?;
        let count = s[0] * s[2] * s[3];
        let BatchNormStats { mean, var, invstd, scale, shift } =
            stats(&xc, &weight.detach(), &bias.detach(), eps, running, count)?;
        let out = affine(&xc, &scale, &shift, relu)?;
        let saved_mean = mean.clone();
        let name = if relu { "batch_norm_relu" } else { "batch_norm" };
        // The ReLU's mask is recomputed from the affine map, which is kept only when there is a ReLU.
        let mask = relu.then_some((scale, shift));
        let out = Tensor::record_reading(out, name, &[self, weight, bias], Reads::Inputs, move |g, _, x| {
            let (dx, dw, db) = backward(g, &xc, &saved_mean, &invstd, &x[1], mask.as_ref().map(|(s, t)| (s, t)))?;
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

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
        let s = self.shape();
        if s.len() != 4 || weight.shape() != [s[1]] || bias.shape() != [s[1]] {
            return Err(TensorError::ShapeMismatch { op: "batch_norm", lhs: s.to_vec(), rhs: weight.shape().to_vec() });
        }
        // One arrangement of the input serves the statistics, the normalisation and the backward.
        let xc = backend::channel_data(self)?;
        let (mean, var) = backend::batch_norm_stats(&xc)?;
        let (w, b) = (weight.detach(), bias.detach());
        let invstd = var.add_scalar(eps)?.sqrt()?.powf(-1.0)?;
        let scale = w.mul(&invstd)?;
        let shift = b.sub(&mean.mul(&scale)?)?;
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

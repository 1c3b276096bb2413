//! `log_softmax_nll`: the chapter's `nll(log_softmax(x), target)` per item, fused into one op, with label smoothing;
//! and `bce_with_logits`, the multi-label loss per element, fused as one pass forward and one backward.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::backend;
use crate::layout::format::row_major;
use crate::ops::elementwise::{BinaryOp, binary};
use crate::storage::Indices;
use crate::{Result, Tensor, TensorError};

/// The fused cross-entropy kernels each backend provides, on row-major `[n, c]` logits.
pub(crate) trait LossKernels {
    /// The per-row losses `(1 - eps) * (lse - x[i, targets[i]]) + eps * mean_j(lse - x[i, j])` and logsumexps
    /// `lse`, both `[n]`, and the targets on this device for the backward (uploaded once).
    fn log_softmax_nll(&self, x: &Tensor, targets: &[u32], eps: f32) -> Result<(Tensor, Tensor, Indices)>;
    /// The logits' gradient from the per-row gradient `dloss`: `dloss * (softmax - q)`, with
    /// `q = (1 - eps) * one_hot + eps / c` the smoothed target. `dloss` and `x` are row-major.
    fn log_softmax_nll_backward(
        &self,
        dloss: &Tensor,
        x: &Tensor,
        lse: &Tensor,
        targets: &Indices,
        eps: f32,
    ) -> Result<Tensor>;
}

impl Tensor {
    /// For logits `[n, c]`, the `n` losses `-log_softmax(self)[i, targets[i]]`, as one op instead of the
    /// chapter's five (max, exp, sum, log and pick), like PyTorch's fused `cross_entropy`.
    ///
    /// Forward: `lse[i] = m + ln(sum_j exp(x[i, j] - m))` with `m` the row's maximum, so logits of +-1e4 stay
    /// finite, and `loss[i] = lse[i] - x[i, targets[i]]`. Backward:
    /// `dx[i, j] = g[i] * (exp(x[i, j] - lse[i]) - [j == targets[i]])`, the softmax minus the one-hot target. This is
    /// [`log_softmax_nll_smooth`](Tensor::log_softmax_nll_smooth) with `eps = 0`.
    ///
    /// ```
    /// let x = tiny_tensor::Tensor::from_vec(vec![0.0, 0.0, 1e4, -1e4], &[2, 2]).unwrap();
    /// let loss = x.log_softmax_nll(&[0, 0]).unwrap().to_vec();
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6 && loss[1] == 0.0);
    /// ```
    pub fn log_softmax_nll(&self, targets: &[u32]) -> Result<Tensor> {
        self.log_softmax_nll_smooth(targets, 0.0)
    }

    /// For logits `[n, c]`, the `n` label-smoothed cross entropies `-sum_j q[i, j] * log_softmax(self)[i, j]`
    /// with `q = (1 - eps) * one_hot(targets) + eps / c`: PyTorch's `F.cross_entropy(x, targets,
    /// label_smoothing=eps, reduction='none')`, fused into the same single op as
    /// [`log_softmax_nll`](Tensor::log_softmax_nll), which it equals bit for bit at `eps = 0`.
    ///
    /// Forward: `loss[i] = (1 - eps) * (lse[i] - x[i, targets[i]]) + eps * mean_j(lse[i] - x[i, j])`, the mean
    /// taken as `ln(sum_j exp(x[i, j] - m)) + mean_j(m - x[i, j])` so that no term cancels. Backward:
    /// `dx[i, j] = g[i] * (softmax(x)[i, j] - q[i, j])`. `eps` must lie in `[0, 1]`.
    ///
    /// ```
    /// let x = tiny_tensor::Tensor::from_vec(vec![0.0, 0.0, 1e4, -1e4], &[2, 2]).unwrap();
    /// // Everything smoothed: the mean of -log p over the classes, whatever the target.
    /// let loss = x.log_softmax_nll_smooth(&[0, 1], 1.0).unwrap().to_vec();
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6 && loss[1] == 1e4);
    /// assert!(x.log_softmax_nll_smooth(&[0, 1], 1.5).is_err());
    /// ```
    pub fn log_softmax_nll_smooth(&self, targets: &[u32], eps: f32) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 2 || s[0] != targets.len() {
            return Err(TensorError::ShapeMismatch {
                op: "log_softmax_nll",
                lhs: s.to_vec(),
                rhs: vec![targets.len()],
            });
        }
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= s[1]) {
            return Err(TensorError::IndexOutOfRange { op: "log_softmax_nll", index: bad as usize, size: s[1] });
        }
        if !(0.0..=1.0).contains(&eps) {
            return Err(TensorError::InvalidArgument {
                op: "log_softmax_nll",
                msg: format!("label smoothing eps must lie in [0, 1], got {eps}"),
            });
        }
        let (loss, lse, targets) = backend::on(self)?.log_softmax_nll(&row_major(self)?, targets, eps)?;
        Ok(Tensor::record(loss, "log_softmax_nll", &[self], move |g, _, x| {
            let (dloss, logits) = (row_major(g)?, row_major(&x[0])?);
            let be = backend::on_all("log_softmax_nll", &logits, &[&dloss])?;
            Ok(vec![Some(be.log_softmax_nll_backward(&dloss, &logits, &lse, &targets, eps)?)])
        }))
    }
}

impl Tensor {
    /// The binary cross entropy of logits `self` against targets of the same shape, element by element:
    /// PyTorch's `F.binary_cross_entropy_with_logits(x, t, reduction='none')`, the loss of multi-label
    /// classification (fastbook chapter 6), one pass forward and one backward.
    ///
    /// Forward: `loss = max(x, 0) - x * t + ln(1 + e^-|x|)`, which is `-(t ln sigmoid(x) + (1 - t) ln(1 -
    /// sigmoid(x)))` written so that no logit overflows. Backward: `dx = g * (sigmoid(x) - t)` and, when the
    /// targets take part in autograd (soft targets from a mix), `dt = -g * x`. Targets are usually 0 or 1;
    /// any value is accepted, as in PyTorch.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![0.0, 1e4, -1e4, 2.0], &[2, 2]).unwrap();
    /// let t = Tensor::from_vec(vec![1.0, 1.0, 0.0, 0.0], &[2, 2]).unwrap();
    /// let loss = x.bce_with_logits(&t).unwrap().to_vec();
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-7 && loss[1] == 0.0 && loss[2] == 0.0);
    /// assert!((loss[3] - (1.0 + (-2f32).exp()).ln() - 2.0).abs() < 1e-6);
    /// ```
    ///
    /// # Errors
    /// [`TensorError::ShapeMismatch`] when the shapes differ, or a device error when the tensors are on two
    /// devices.
    pub fn bce_with_logits(&self, target: &Tensor) -> Result<Tensor> {
        if self.shape() != target.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "bce_with_logits",
                lhs: self.shape().to_vec(),
                rhs: target.shape().to_vec(),
            });
        }
        let loss = binary("bce_with_logits", self, target, BinaryOp::BceWithLogits)?;
        Ok(Tensor::record(loss, "bce_with_logits", &[self, target], |g, _, x| {
            let dx = if x[0].requires_grad() {
                Some(binary("bce_with_logits backward", &x[0], &x[1], BinaryOp::SigmoidSub)?.mul(g)?)
            } else {
                None
            };
            let dt = if x[1].requires_grad() { Some(g.mul(&x[0])?.neg()?) } else { None };
            Ok(vec![dx, dt])
        }))
    }
}

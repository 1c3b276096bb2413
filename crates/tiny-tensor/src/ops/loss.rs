//! `log_softmax_nll`: the chapter's `nll(log_softmax(x), target)` per item, fused into one op.

use crate::backend;
use crate::{Result, Tensor, TensorError};

impl Tensor {
    /// For logits `[n, c]`, the `n` losses `-log_softmax(self)[i, targets[i]]`, as one op instead of the
    /// chapter's five (max, exp, sum, log and pick), like PyTorch's fused `cross_entropy`.
    ///
    /// Forward: `lse[i] = m + ln(sum_j exp(x[i, j] - m))` with `m` the row's maximum, so logits of +-1e4 stay
    /// finite, and `loss[i] = lse[i] - x[i, targets[i]]`. Backward: `dx[i, j] = g[i] * (exp(x[i, j] - lse[i])
    /// - [j == targets[i]])`, the softmax minus the one-hot target.
    ///
    /// ```
    /// let x = tiny_tensor::Tensor::from_vec(vec![0.0, 0.0, 1e4, -1e4], &[2, 2]).unwrap();
    /// let loss = x.log_softmax_nll(&[0, 0]).unwrap().to_vec();
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6 && loss[1] == 0.0);
    /// ```
    pub fn log_softmax_nll(&self, targets: &[u32]) -> Result<Tensor> {
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
        let (loss, lse, targets) = backend::log_softmax_nll(self, targets)?;
        Ok(Tensor::record(loss, "log_softmax_nll", &[self], move |g, _, x| {
            Ok(vec![Some(backend::log_softmax_nll_backward(g, &x[0], &lse, &targets)?)])
        }))
    }
}

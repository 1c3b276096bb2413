//! The chapter's loss and metric: `log_softmax` via LogSumExp, `nll`, `cross_entropy`, `accuracy`.

use tiny_tensor::Tensor;

use crate::{NnError, Result};

/// `x - logsumexp(x)` over the last dimension: finite even for logits of +-1e4.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(x.sub(&x.logsumexp(&[-1], true)?)?)
}

/// The per-item negative log likelihood `-input[i, target[i]]` of log-probabilities `input` `[n, c]`.
pub fn nll_items(input: &Tensor, target: &[u32]) -> Result<Tensor> {
    Ok(input.pick(target)?.neg()?)
}

/// The chapter's `nll`: `-input[range(n), target].mean()`.
pub fn nll(input: &Tensor, target: &[u32]) -> Result<Tensor> {
    Ok(nll_items(input, target)?.mean_all()?)
}

/// The per-item cross entropy of logits `[n, c]` against class indices (no reduction): the values of
/// `nll_items(&log_softmax(preds)?, target)`, computed by tiny-tensor's fused `log_softmax_nll`, one op
/// instead of six (on a GPU, one kernel launch forward and one backward).
pub fn cross_entropy_items(preds: &Tensor, target: &[u32]) -> Result<Tensor> {
    Ok(preds.log_softmax_nll(target)?)
}

/// The chapter's `cross_entropy`: `nll(log_softmax(preds), target)`, averaged over the batch (fused, as
/// in [`cross_entropy_items`]).
pub fn cross_entropy(preds: &Tensor, target: &[u32]) -> Result<Tensor> {
    Ok(cross_entropy_items(preds, target)?.mean_all()?)
}

/// The fraction of rows whose largest logit is at the target class.
pub fn accuracy(preds: &Tensor, target: &[u32]) -> Result<f32> {
    let predicted = preds.argmax(-1)?;
    if predicted.len() != target.len() {
        return Err(NnError::InvalidArgument {
            layer: "accuracy",
            msg: format!("{} predictions for {} targets", predicted.len(), target.len()),
        });
    }
    let hits = predicted.iter().zip(target).filter(|(p, t)| p == t).count();
    Ok(hits as f32 / target.len().max(1) as f32)
}

//! The multi-label losses: binary cross entropy from logits, PyTorch's `BCEWithLogitsLoss` and fastai's `BCEWithLogitsLossFlat`.
//!
//! A multi-label batch's targets reach a loss as tiny-data's batches carry them: `c` flags (0 or 1) per item,
//! row-major, one row per row of the `[n, c]` logits (fastai's multi-hot encoding, `OneHotEncode`).

use tiny_tensor::Tensor;

use crate::{NnError, Result};

/// The multi-hot targets `[n, c]` of `preds` (`[n, c]`) from `flags` (`n * c` values, each 0 or 1), on the
/// predictions' device.
///
/// # Errors
/// [`NnError::InvalidArgument`] naming `loss` when `preds` is not `[n, c]`, the flags are not `n * c`, or a flag
/// is neither 0 nor 1.
pub fn multi_hot(loss: &'static str, preds: &Tensor, flags: &[u32]) -> Result<Tensor> {
    let shape = preds.shape();
    let bad = |msg: String| NnError::InvalidArgument { layer: loss, msg };
    let [n, c] = *shape else {
        return Err(bad(format!("wants predictions [items, classes], got {shape:?}")));
    };
    if flags.len() != n * c {
        return Err(bad(format!(
            "wants {c} target flags per item (multi-hot, {} for {n} items), got {}; single-label class indices need \
             cross_entropy",
            n * c,
            flags.len()
        )));
    }
    if let Some(at) = flags.iter().position(|&f| f > 1) {
        return Err(bad(format!("target flag {} of item {} is {}, not 0 or 1", at % c, at / c, flags[at])));
    }
    let hot = flags.iter().map(|&f| f as f32).collect();
    Ok(Tensor::from_vec(hot, &[n, c])?.to_device(preds.device())?)
}

/// PyTorch's `F.binary_cross_entropy_with_logits(preds, target)`: the mean over every element of tiny-tensor's
/// fused [`Tensor::bce_with_logits`], for targets of the logits' shape (0 and 1, or soft values from a mix).
///
/// ```
/// use tiny_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.0, 0.0], &[1, 2]).unwrap();
/// let t = Tensor::from_vec(vec![1.0, 0.0], &[1, 2]).unwrap();
/// let loss = tiny_nn::binary_cross_entropy_with_logits(&x, &t).unwrap().item().unwrap();
/// assert!((loss - 2f32.ln()).abs() < 1e-7);
/// ```
pub fn binary_cross_entropy_with_logits(preds: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(preds.bce_with_logits(target)?.mean_all()?)
}

/// fastai's `BCEWithLogitsLossFlat()` as a learner's loss: the mean binary cross entropy of logits `[n, c]`
/// against multi-hot targets given as `c` flags per item (see [`multi_hot`]).
///
/// ```
/// use tiny_tensor::Tensor;
/// let x = Tensor::from_vec(vec![4.0, -4.0, 0.0, 0.0], &[2, 2]).unwrap();
/// let loss = tiny_nn::bce_with_logits_flat(&x, &[1, 0, 1, 0]).unwrap().item().unwrap();
/// assert!((loss - (2.0 * (1.0 + (-4f32).exp()).ln() + 2.0 * 2f32.ln()) / 4.0).abs() < 1e-6);
/// assert!(tiny_nn::bce_with_logits_flat(&x, &[1, 0]).is_err()); // class indices, not flags
/// ```
pub fn bce_with_logits_flat(preds: &Tensor, flags: &[u32]) -> Result<Tensor> {
    binary_cross_entropy_with_logits(preds, &multi_hot("bce_with_logits_flat", preds, flags)?)
}

/// The per-item binary cross entropy `[n]` of logits `[n, c]` against `c` flags per item, each item's mean over
/// its classes: [`bce_with_logits_flat`] before the mean over items (their mean is that loss), the form of an
/// item loss (Mixup's, top losses).
pub fn bce_with_logits_items(preds: &Tensor, flags: &[u32]) -> Result<Tensor> {
    let target = multi_hot("bce_with_logits_items", preds, flags)?;
    Ok(preds.bce_with_logits(&target)?.mean(&[1], false)?)
}

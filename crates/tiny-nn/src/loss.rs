//! The chapter's losses (`log_softmax` via LogSumExp, `nll`, `cross_entropy`), plus label smoothing.

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

/// Checks that a label-smoothing `eps` lies in `[0, 1]`, as PyTorch's `label_smoothing` must.
fn check_eps(layer: &'static str, eps: f32) -> Result<()> {
    if (0.0..=1.0).contains(&eps) {
        Ok(())
    } else {
        Err(NnError::InvalidArgument { layer, msg: format!("label smoothing eps must lie in [0, 1], got {eps}") })
    }
}

/// The per-item label-smoothed cross entropy of logits `[n, c]` (no reduction): `(1 - eps) * nll_i + eps *
/// mean_c(-log_softmax(preds)[i, c])`, the cross entropy against `q = (1 - eps) * one_hot + eps / c`, as PyTorch's
/// `F.cross_entropy(preds, target, label_smoothing=eps, reduction='none')`. One fused op (tiny-tensor's
/// `log_softmax_nll_smooth`); `eps = 0` is [`cross_entropy_items`] exactly. Errors unless `eps` is in `[0, 1]`.
pub fn cross_entropy_smooth_items(preds: &Tensor, target: &[u32], eps: f32) -> Result<Tensor> {
    check_eps("cross_entropy_smooth", eps)?;
    Ok(preds.log_softmax_nll_smooth(target, eps)?)
}

/// The label-smoothed cross entropy averaged over the batch: PyTorch's `F.cross_entropy(preds, target,
/// label_smoothing=eps)` and fastai's `LabelSmoothingCrossEntropy(eps)` (see [`LabelSmoothingCrossEntropy`]).
/// The gradient with respect to the logits is `(softmax - q) / n`. Errors unless `eps` is in `[0, 1]`.
///
/// ```
/// use tiny_nn::{cross_entropy, cross_entropy_smooth};
/// let x = tiny_tensor::Tensor::from_vec(vec![2.0, 0.0, -1.0, 0.5, 0.5, 3.0], &[2, 3]).unwrap();
/// let plain = cross_entropy(&x, &[0, 2]).unwrap().item().unwrap();
/// assert_eq!(cross_entropy_smooth(&x, &[0, 2], 0.0).unwrap().item().unwrap(), plain);
/// assert!(cross_entropy_smooth(&x, &[0, 2], 0.1).unwrap().item().unwrap() > plain);
/// assert!(cross_entropy_smooth(&x, &[0, 2], -0.1).is_err());
/// ```
pub fn cross_entropy_smooth(preds: &Tensor, target: &[u32], eps: f32) -> Result<Tensor> {
    Ok(cross_entropy_smooth_items(preds, target, eps)?.mean_all()?)
}

/// fastai's `LabelSmoothingCrossEntropy` (and `LabelSmoothingCrossEntropyFlat`) with the mean reduction and no
/// class weights: `loss * eps / c + (1 - eps) * nll` with `loss = mean_i(-sum_c log_softmax(x)[i, c])`, which is
/// PyTorch's `label_smoothing` formula, [`cross_entropy_smooth`]. Its `eps` is checked once, when it is made.
///
/// ```
/// use tiny_nn::LabelSmoothingCrossEntropy;
/// let loss_func = LabelSmoothingCrossEntropy::new(0.1).unwrap().loss_func();
/// let x = tiny_tensor::Tensor::from_vec(vec![2.0, 0.0, -1.0, 0.5, 0.5, 3.0], &[2, 3]).unwrap();
/// assert!(loss_func(&x, &[0, 2]).unwrap().item().unwrap() > 0.0);
/// assert!(LabelSmoothingCrossEntropy::new(1.5).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSmoothingCrossEntropy {
    eps: f32,
}

impl LabelSmoothingCrossEntropy {
    /// The loss with smoothing `eps` (fastai's default is 0.1, [`Default`]); errors unless `eps` is in `[0, 1]`.
    pub fn new(eps: f32) -> Result<Self> {
        check_eps("LabelSmoothingCrossEntropy", eps)?;
        Ok(LabelSmoothingCrossEntropy { eps })
    }

    /// The smoothing `eps`.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// The loss averaged over the batch, [`cross_entropy_smooth`] with this `eps`.
    pub fn loss(&self, preds: &Tensor, target: &[u32]) -> Result<Tensor> {
        cross_entropy_smooth(preds, target, self.eps)
    }

    /// The per-item losses (no reduction), [`cross_entropy_smooth_items`] with this `eps`.
    pub fn items(&self, preds: &Tensor, target: &[u32]) -> Result<Tensor> {
        cross_entropy_smooth_items(preds, target, self.eps)
    }

    /// The loss as a function of predictions and targets, the form a learner's `loss_func` takes.
    pub fn loss_func(self) -> impl Fn(&Tensor, &[u32]) -> Result<Tensor> + Clone + Send + Sync + 'static {
        move |preds, target| self.loss(preds, target)
    }

    /// The per-item losses as a function, the form of an item loss (Mixup's, say).
    pub fn items_func(self) -> impl Fn(&Tensor, &[u32]) -> Result<Tensor> + Clone + Send + Sync + 'static {
        move |preds, target| self.items(preds, target)
    }
}

impl Default for LabelSmoothingCrossEntropy {
    /// fastai's default, `eps = 0.1`.
    fn default() -> Self {
        LabelSmoothingCrossEntropy { eps: 0.1 }
    }
}

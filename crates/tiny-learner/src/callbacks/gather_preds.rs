//! `GatherPreds`: fastai's `GatherPredsCallback`, which keeps an inference pass's probabilities and losses.

use tiny_data::Targets;
use tiny_tensor::Tensor;

use crate::{Callback, CbResult, LearnerError, LearnerState, Preds, Result};

/// Keeps the probabilities (and, if asked, the per-item losses) of every batch of an inference pass, as tensors on
/// the learner's device until the pass ends, so that the host waits once per pass and not once per batch. The
/// probabilities are the loss's activation, as fastai's `loss_func.activation`: the softmax for class indices, the
/// sigmoid of every output for multi-label targets, whose per-item loss is the binary cross entropy.
pub(crate) struct GatherPreds {
    with_loss: bool,
    probs: Vec<Tensor>,
    losses: Vec<Tensor>,
    targets: Targets,
}

impl Callback for GatherPreds {
    fn order(&self) -> i32 {
        // After every callback that changes the predictions or the loss.
        90
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        let _no_grad = tiny_tensor::no_grad();
        let (preds, y) = (learn.preds.detach(), &learn.batch.y);
        if y.is_multi_label() {
            if self.with_loss {
                self.losses.push(tiny_nn::bce_with_logits_items(&preds, y.as_slice())?);
            }
            self.probs.push(sigmoid(&preds)?);
        } else {
            let log_probs = tiny_nn::log_softmax(&preds)?;
            if self.with_loss {
                self.losses.push(log_probs.pick(y.as_slice())?.neg()?);
            }
            self.probs.push(log_probs.exp()?);
        }
        self.targets.extend(y).map_err(LearnerError::from)?;
        Ok(())
    }
}

impl GatherPreds {
    /// A gatherer for one pass, keeping per-item losses when `with_loss`.
    pub(crate) fn new(with_loss: bool) -> Self {
        GatherPreds { with_loss, probs: Vec::new(), losses: Vec::new(), targets: Targets::default() }
    }

    /// Brings the pass's results to the CPU as one tensor of probabilities and one list of losses.
    pub(crate) fn finish(self) -> Result<Preds> {
        let cpu = |ts: Vec<Tensor>| -> Result<Vec<Tensor>> {
            ts.iter().map(|t| t.to_device(tiny_tensor::Device::Cpu).map_err(LearnerError::from)).collect()
        };
        let probs = cpu(self.probs)?;
        let probs = match probs.as_slice() {
            [] => Tensor::zeros(&[0, 0]),
            parts => Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)?,
        };
        let losses = if self.with_loss {
            Some(cpu(self.losses)?.iter().map(Tensor::try_to_vec).collect::<tiny_tensor::Result<Vec<_>>>()?.concat())
        } else {
            None
        };
        Ok(Preds { probs, targets: self.targets, losses })
    }
}

/// `1 / (1 + e^-x)` of every element: the probabilities of multi-label outputs.
pub(crate) fn sigmoid(x: &Tensor) -> tiny_tensor::Result<Tensor> {
    x.neg()?.exp()?.add_scalar(1.0)?.powf(-1.0)
}

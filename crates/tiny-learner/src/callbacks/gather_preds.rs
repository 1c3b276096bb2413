//! `GatherPreds`: fastai's `GatherPredsCallback`, which keeps an inference pass's probabilities and losses.

use tiny_tensor::Tensor;

use crate::{Callback, CbResult, LearnerError, LearnerState, Preds, Result};

/// Keeps the probabilities (and, if asked, the per-item losses) of every batch of an inference pass, as tensors on
/// the learner's device until the pass ends, so that the host waits once per pass and not once per batch.
pub(crate) struct GatherPreds {
    with_loss: bool,
    probs: Vec<Tensor>,
    losses: Vec<Tensor>,
    targets: Vec<u32>,
}

impl Callback for GatherPreds {
    fn order(&self) -> i32 {
        // After every callback that changes the predictions or the loss.
        90
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        let _no_grad = tiny_tensor::no_grad();
        let log_probs = tiny_nn::log_softmax(&learn.preds.detach())?;
        if self.with_loss {
            self.losses.push(log_probs.pick(&learn.batch.y)?.neg()?);
        }
        self.probs.push(log_probs.exp()?);
        self.targets.extend_from_slice(&learn.batch.y);
        Ok(())
    }
}

impl GatherPreds {
    /// A gatherer for one pass, keeping per-item losses when `with_loss`.
    pub(crate) fn new(with_loss: bool) -> Self {
        GatherPreds { with_loss, probs: Vec::new(), losses: Vec::new(), targets: Vec::new() }
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

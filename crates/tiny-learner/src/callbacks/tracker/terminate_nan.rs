//! `TerminateOnNaN`: fastai's `TerminateOnNaNCallback`, ending a fit whose loss stops being finite.

use tiny_tensor::{Device, Tensor};

use crate::{Callback, CbResult, LearnerError, LearnerState};

/// Ends the fit with [`LearnerError::NonFiniteLoss`] as soon as the loss is NaN or infinite, as fastai's
/// `TerminateOnNaNCallback` does, naming the epoch and batch. On the CPU it reads each batch's loss; on a GPU it
/// adds the losses up on the device and reads the sum once at the end of each phase (a NaN or an infinity
/// stays one in the sum), so it adds no host synchronisation per batch. Because the error ends the fit before
/// `after_epoch`, [`SaveModel`](crate::SaveModel) writes no checkpoint of the diverged weights.
#[derive(Debug, Default)]
pub struct TerminateOnNaN {
    sum: Option<Tensor>,
    last_batch: usize,
}

impl TerminateOnNaN {
    /// The callback.
    pub fn new() -> Self {
        Self::default()
    }

    fn diverged(learn: &LearnerState, batch: usize, loss: f32) -> CbResult {
        let phase = if learn.training { "training" } else { "validation" };
        Err(LearnerError::NonFiniteLoss { epoch: learn.epoch, phase, batch, loss }.into())
    }

    fn check_sum(&mut self, learn: &LearnerState) -> CbResult {
        match self.sum.take() {
            Some(sum) => match sum.item()? {
                v if v.is_finite() => Ok(()),
                v => Self::diverged(learn, self.last_batch, v),
            },
            None => Ok(()),
        }
    }
}

impl Callback for TerminateOnNaN {
    fn runs_in_inference(&self) -> bool {
        false
    }

    /// After the loss and before backward, so that a NaN never reaches the weights through this batch's step.
    fn order(&self) -> i32 {
        -20
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.loss.device() == Device::Cpu {
            let v = learn.loss.item()?;
            return if v.is_finite() { Ok(()) } else { Self::diverged(learn, learn.iter, v) };
        }
        let _no_grad = tiny_tensor::no_grad();
        let loss = learn.loss.detach();
        self.sum = Some(match self.sum.take() {
            Some(s) => s.add(&loss)?,
            None => loss,
        });
        self.last_batch = learn.iter;
        Ok(())
    }

    fn after_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.check_sum(learn)
    }

    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.check_sum(learn)
    }
}

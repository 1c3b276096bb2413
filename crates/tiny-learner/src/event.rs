//! The events of the training loop and the typed cancellations that callbacks raise.

use std::fmt;

/// A point in the training loop at which every callback is called, in `order`.
///
/// `fit` nests them as fastai does: fit > epoch > train or validate > batch, and inside a training
/// batch pred, loss, backward and step. Each phase `X` fires `BeforeX`, its body, then `AfterX`; when
/// the body is cancelled with the phase's `Cancel` kind, `AfterCancelX` fires before `AfterX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Once, before anything else of a fit and before the optimizer is created.
    BeforeFit,
    /// After a fit cancelled with `Cancel::Fit`.
    AfterCancelFit,
    /// Once, at the end of a fit.
    AfterFit,
    /// At the start of each epoch (a training phase followed by a validation phase).
    BeforeEpoch,
    /// After an epoch cancelled with `Cancel::Epoch`.
    AfterCancelEpoch,
    /// At the end of each epoch.
    AfterEpoch,
    /// Before the training phase, with the model in training mode.
    BeforeTrain,
    /// After a training phase cancelled with `Cancel::Train`.
    AfterCancelTrain,
    /// After the training phase.
    AfterTrain,
    /// Before the validation phase, with the model in evaluation mode and gradients off.
    BeforeValidate,
    /// After a validation phase cancelled with `Cancel::Valid`.
    AfterCancelValidate,
    /// After the validation phase.
    AfterValidate,
    /// Before each batch; `learn.batch` holds it and may be replaced.
    BeforeBatch,
    /// After the model computed `learn.preds`.
    AfterPred,
    /// After the loss function computed `learn.loss`.
    AfterLoss,
    /// Before `loss.backward()` (training only).
    BeforeBackward,
    /// After the gradients are computed (training only).
    AfterBackward,
    /// Before the optimizer step (training only): the place for gradient clipping.
    BeforeStep,
    /// After the optimizer step, before the gradients are zeroed (training only).
    AfterStep,
    /// After a batch cancelled with `Cancel::Batch`.
    AfterCancelBatch,
    /// After each batch.
    AfterBatch,
}

impl Event {
    /// The fastai name of the event, such as `before_fit` or `after_cancel_batch`.
    pub fn name(self) -> &'static str {
        match self {
            Event::BeforeFit => "before_fit",
            Event::AfterCancelFit => "after_cancel_fit",
            Event::AfterFit => "after_fit",
            Event::BeforeEpoch => "before_epoch",
            Event::AfterCancelEpoch => "after_cancel_epoch",
            Event::AfterEpoch => "after_epoch",
            Event::BeforeTrain => "before_train",
            Event::AfterCancelTrain => "after_cancel_train",
            Event::AfterTrain => "after_train",
            Event::BeforeValidate => "before_validate",
            Event::AfterCancelValidate => "after_cancel_validate",
            Event::AfterValidate => "after_validate",
            Event::BeforeBatch => "before_batch",
            Event::AfterPred => "after_pred",
            Event::AfterLoss => "after_loss",
            Event::BeforeBackward => "before_backward",
            Event::AfterBackward => "after_backward",
            Event::BeforeStep => "before_step",
            Event::AfterStep => "after_step",
            Event::AfterCancelBatch => "after_cancel_batch",
            Event::AfterBatch => "after_batch",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed cancellation, fastai's `Cancel*Exception`: a callback returns `Err(Cancel::X.into())` and
/// the phase of kind `X` stops, fires its `AfterCancel` event and then its `After` event, and the loop
/// goes on with what follows that phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cancel {
    /// Skips the rest of the current batch (no backward or step if raised before them).
    Batch,
    /// Ends the current training phase; validation still runs.
    Train,
    /// Ends the current validation phase.
    Valid,
    /// Ends the current epoch; the next epoch starts.
    Epoch,
    /// Ends the fit.
    Fit,
}

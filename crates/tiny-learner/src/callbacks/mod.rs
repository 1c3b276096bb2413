//! The `Callback` trait, with a no-op default per event, and the callbacks of the chapter and of fastai.

use std::any::Any;

use crate::{CbResult, Event, LearnerState};

mod aug;
mod checkpoint;
mod csv_logger;
mod cutmix;
mod early_stopping;
mod grad_clip;
mod lr_finder;
mod mixup;
mod monitor;
mod one_cycle;
mod recorder;
mod reduce_lr;
mod setup;
mod tally;
mod terminate_nan;
mod track;

pub use aug::{AugTransforms, Mat3, find_coeffs};
pub(crate) use checkpoint::check_finite;
pub use checkpoint::{CheckpointInfo, Overrides, SaveModel, check_writable};
pub use csv_logger::CsvLogger;
pub use cutmix::CutMix;
pub use early_stopping::EarlyStopping;
pub use grad_clip::GradientClip;
pub use lr_finder::{FinderStop, LrFindResult, LrFinder, LrSchedule, Suggest, smooth};
pub use mixup::Mixup;
pub use monitor::Monitor;
pub use one_cycle::OneCycle;
pub use recorder::{EpochStats, Recorder};
pub use reduce_lr::ReduceLROnPlateau;
pub use setup::SetupLearner;
pub use terminate_nan::TerminateOnNaN;
pub use track::{PhaseRecord, TrackResults};

/// Code that runs at the events of the training loop, fastai's `Callback`.
///
/// Every event has a method that does nothing by default; a callback overrides the ones it needs.
/// Each receives the learner's state as `&mut`, the Rust form of fastai's attribute delegation, so a
/// callback may read and change the model, the batch, the predictions, the loss, the optimizer and
/// the counters. Returning `Err(Cancel::X.into())` cancels the phase of kind `X`; returning an error
/// ends the fit with it. Callbacks run in increasing `order` (ties keep insertion order).
///
/// ```
/// use tiny_learner::{Callback, Cancel, CbResult, LearnerState};
/// /// Stops the fit after three training batches.
/// struct StopAfter3;
/// impl Callback for StopAfter3 {
///     fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
///         if learn.training && learn.iter == 2 {
///             return Err(Cancel::Fit.into());
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Callback: Any {
    /// A short name, the type's by default.
    fn name(&self) -> &str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// Where the callback runs among the others: lower first (fastai: TrainEval -10, Recorder 50,
    /// schedulers 60). The default is 0.
    fn order(&self) -> i32 {
        0
    }

    /// Whether the callback also runs in the inference passes of `get_preds`, `predict` and `tta`. The default,
    /// true, suits callbacks that prepare batches (such as `SetupLearner`); those that log or keep results
    /// (`TrackResults`, `Recorder`, `CsvLogger`, `SaveModel`, `EarlyStopping`, `TerminateOnNaN`) say false, so
    /// that predicting leaves no trace in the history.
    fn runs_in_inference(&self) -> bool {
        true
    }

    /// Handles one event by calling the method of that name; override this instead to see every event.
    fn on(&mut self, event: Event, learn: &mut LearnerState) -> CbResult {
        match event {
            Event::BeforeFit => self.before_fit(learn),
            Event::AfterCancelFit => self.after_cancel_fit(learn),
            Event::AfterFit => self.after_fit(learn),
            Event::BeforeEpoch => self.before_epoch(learn),
            Event::AfterCancelEpoch => self.after_cancel_epoch(learn),
            Event::AfterEpoch => self.after_epoch(learn),
            Event::BeforeTrain => self.before_train(learn),
            Event::AfterCancelTrain => self.after_cancel_train(learn),
            Event::AfterTrain => self.after_train(learn),
            Event::BeforeValidate => self.before_validate(learn),
            Event::AfterCancelValidate => self.after_cancel_validate(learn),
            Event::AfterValidate => self.after_validate(learn),
            Event::BeforeBatch => self.before_batch(learn),
            Event::AfterPred => self.after_pred(learn),
            Event::AfterLoss => self.after_loss(learn),
            Event::BeforeBackward => self.before_backward(learn),
            Event::AfterBackward => self.after_backward(learn),
            Event::BeforeStep => self.before_step(learn),
            Event::AfterStep => self.after_step(learn),
            Event::AfterCancelBatch => self.after_cancel_batch(learn),
            Event::AfterBatch => self.after_batch(learn),
        }
    }

    /// Before the fit, before the optimizer exists.
    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After a fit cancelled with `Cancel::Fit`.
    fn after_cancel_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// At the end of the fit.
    fn after_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// At the start of each epoch.
    fn before_epoch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After an epoch cancelled with `Cancel::Epoch`.
    fn after_cancel_epoch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// At the end of each epoch.
    fn after_epoch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// Before the training phase.
    fn before_train(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After a training phase cancelled with `Cancel::Train`.
    fn after_cancel_train(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the training phase.
    fn after_train(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// Before the validation phase.
    fn before_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After a validation phase cancelled with `Cancel::Valid`.
    fn after_cancel_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the validation phase.
    fn after_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// Before each batch.
    fn before_batch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the predictions.
    fn after_pred(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the loss.
    fn after_loss(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// Before the backward pass.
    fn before_backward(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the backward pass.
    fn after_backward(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// Before the optimizer step.
    fn before_step(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After the optimizer step.
    fn after_step(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After a batch cancelled with `Cancel::Batch`.
    fn after_cancel_batch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
    /// After each batch.
    fn after_batch(&mut self, _learn: &mut LearnerState) -> CbResult {
        Ok(())
    }
}

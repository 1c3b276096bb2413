//! The `Callback` trait, with a no-op default per event, and the callbacks of the chapter and of fastai.
//!
//! The callbacks are grouped as fastai's `callback/` modules: `schedule/` (`ParamScheduler`, its presets `OneCycle`
//! and `FitOneCycle`, the LR finder), `training.rs` (`GradientAccumulation`, `GradientClip`), `tracker/`
//! (`EarlyStopping`, `SaveModel`, `ReduceLROnPlateau`, `TerminateOnNaN`), and a file for each of the others.

use std::any::Any;

use crate::{CbResult, Event, LearnerState};

mod aug;
mod csv_logger;
mod cutmix;
mod ema;
mod gather_preds;
#[cfg(feature = "cuda")]
mod graph;
mod json_summary;
mod mixup;
mod recorder;
mod schedule;
mod setup;
mod tally;
mod track;
mod tracker;
mod training;

pub use aug::{AugTransforms, Mat3, find_coeffs};
pub use csv_logger::CsvLogger;
pub use cutmix::CutMix;
pub use ema::{Ema, EmaWarmup};
pub(crate) use gather_preds::{GatherPreds, sigmoid};
#[cfg(feature = "cuda")]
pub use graph::GraphStep;
pub use json_summary::{FitResults, JsonSummary};
pub use mixup::Mixup;
pub use recorder::{EpochStats, PhaseRecord, Recorder};
pub use schedule::{
    FinderStop, FitOneCycle, GroupSched, Hyper, LrFindResult, LrFinder, LrSchedule, OneCycle, ParamScheduler, Suggest,
    smooth,
};
pub use setup::SetupLearner;
pub use track::TrackResults;
pub(crate) use tracker::check_finite;
pub use tracker::{
    CheckpointInfo, EarlyStopping, Monitor, Overrides, ReduceLROnPlateau, SaveModel, TerminateOnNaN, check_space,
    check_writable,
};
pub use training::{GradientAccumulation, GradientClip};

/// Code that runs at the events of the training loop, fastai's `Callback`.
///
/// Every event has a method that does nothing by default; a callback overrides the ones it needs.
/// These methods and `on` are generated from the one table of events in `event.rs`.
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

    /// What the callback changes in the training step from one batch to the next (the learning rate, the batch's
    /// mixing, the gradients between backward and step), for `GraphStep`, which replays one captured step and
    /// refuses such callbacks; `None` by default.
    fn varies_per_batch(&self) -> Option<&'static str> {
        None
    }

    // `on` and the no-op method of each event, generated from the events' table in `event.rs`.
    crate::event::callback_methods!();
}

//! tiny-learner: the chapter's `Learner` with typed callbacks, schedules, the LR finder and checkpoints.
//!
//! This is the top library crate of `tiny`, the Rust version of fastbook chapter 19 ("A fastai
//! Learner from Scratch"). A [`Learner`] holds a model, [`DataLoaders`], a loss, an optimizer factory and
//! [`Callback`]s; `fit` nests fit > epoch > train/validate > batch exactly as fastai's
//! `_with_events`, and callbacks receive the [`LearnerState`] as `&mut`. Cancellation is a value,
//! `Err(Cancel::Fit.into())`, never a panic. The learner's [`Metric`]s (accuracy by default; see [`metrics`])
//! are measured by `TrackResults` and the `Recorder` over each phase.
//!
//! ```
//! use tiny_learner::{InMemory, Learner, DataLoaders, TrackResults};
//! use tiny_nn::{Linear, cross_entropy};
//! use tiny_tensor::Tensor;
//! // Two classes told apart by the sign of the first feature.
//! let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0, 2.0, 1.0, -2.0, 1.0], &[4, 2]).unwrap();
//! let y = vec![1, 0, 1, 0];
//! let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 2).unwrap(), InMemory::new(x, y, 4).unwrap());
//! let model = Box::new(Linear::new(2, 2).unwrap());
//! let mut learn = Learner::new(model, dls, cross_entropy, 0.5, vec![Box::new(TrackResults::quiet())]);
//! learn.fit(20).unwrap();
//! let track = learn.callback::<TrackResults>().unwrap();
//! assert_eq!(track.last_valid().unwrap().acc, 1.0);
//! ```

mod arch;
pub mod callbacks;
mod error;
mod event;
mod export;
mod fine_tune;
mod inference;
mod interpret;
mod learner;
pub mod memory;
pub mod metrics;
#[cfg(feature = "plot")]
pub mod plot;
mod progress;
pub mod schedule;
mod summary;
pub mod tensorboard;

#[cfg(feature = "cuda")]
pub use callbacks::GraphStep;
pub use callbacks::{
    AugTransforms, Callback, CheckpointInfo, CsvLogger, CutMix, EarlyStopping, Ema, EmaWarmup, EpochStats, FinderStop,
    FitOneCycle, FitResults, GradientAccumulation, GradientClip, GroupSched, Hyper, JsonSummary, LrFindResult,
    LrFinder, LrSchedule, Mixup, Monitor, OneCycle, Overrides, ParamScheduler, PhaseRecord, Recorder,
    ReduceLROnPlateau, SaveModel, SetupLearner, Suggest, TerminateOnNaN, TrackResults, check_space, check_writable,
    find_coeffs,
};
pub use tiny_data::{Batch, BatchSource, DataLoaders, InMemory, Targets};

pub use arch::{ARCHS, Arch, Head, IMAGENET_STATS, SplitFn};
pub use error::{CbResult, LearnerError, Result, Stop};
pub use event::{Cancel, Event};
pub use export::{EXPORT_FORMAT, ExportInfo, load_learner};
pub use fine_tune::{LrRange, Splitter, fastai_resnet_split, head_split, resnet_split, single_group};
pub use inference::{DEFAULT_THRESH, Prediction, Preds, TEST_BS, Tta};
pub use interpret::{ClassificationInterpretation, MultiLabelInterpretation, TopLoss};
#[cfg(feature = "plot")]
pub use interpret::{show_batch, show_batch_denormalized};
pub use learner::{CallbackState, Learner, LearnerState, LossFn, OptFunc, sgd};
pub use metrics::{
    Accuracy, AccuracyMulti, ErrorRate, F1Score, F1ScoreMulti, Metric, Precision, Recall, TopKAccuracy,
    metric_from_name, metrics_from_names,
};
pub use progress::print_progress;
pub use tensorboard::TensorBoard;

/// The Learner, its callbacks and metrics, and the preludes of the crates below, in one import:
/// `use tiny_learner::prelude::*;` (the metric `Precision` stays `metrics::Precision`, as the prelude's
/// `Precision` is tiny-tensor's bf16 switch).
pub mod prelude {
    pub use crate::metrics::{accuracy, accuracy_multi, error_rate};
    pub use crate::{
        Arch, Callback, Cancel, CbResult, ClassificationInterpretation, CsvLogger, EarlyStopping, Event, FitOneCycle,
        JsonSummary, Learner, LearnerError, LearnerState, LrFinder, LrRange, Metric, Mixup, Monitor, OneCycle,
        ParamScheduler, Recorder, SaveModel, SetupLearner, TrackResults, Tta, load_learner,
    };
    pub use tiny_data::prelude::*;
    pub use tiny_nn::prelude::*;
    pub use tiny_optim::prelude::*;
}

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

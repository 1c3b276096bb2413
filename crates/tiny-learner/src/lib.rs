//! tiny-learner: the chapter's `Learner` with typed callbacks, schedules, the LR finder and checkpoints.
//!
//! This is the top library crate of `tiny`, the Rust version of fastbook chapter 19 ("A fastai
//! Learner from Scratch"). A [`Learner`] holds a model, [`Loaders`], a loss, an optimizer factory and
//! [`Callback`]s; `fit` nests fit > epoch > train/validate > batch exactly as fastai's
//! `_with_events`, and callbacks receive the [`LearnerState`] as `&mut`. Cancellation is a value,
//! `Err(Cancel::Fit.into())`, never a panic. The learner's [`Metric`]s (accuracy by default; see [`metrics`])
//! are measured by `TrackResults` and the `Recorder` over each phase.
//!
//! ```
//! use tiny_learner::{InMemory, Learner, Loaders, TrackResults};
//! use tiny_nn::{Linear, cross_entropy};
//! use tiny_tensor::Tensor;
//! // Two classes told apart by the sign of the first feature.
//! let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0, 2.0, 1.0, -2.0, 1.0], &[4, 2]).unwrap();
//! let y = vec![1, 0, 1, 0];
//! let dls = Loaders::new(InMemory::new(x.clone(), y.clone(), 2).unwrap(), InMemory::new(x, y, 4).unwrap());
//! let model = Box::new(Linear::new(2, 2).unwrap());
//! let mut learn = Learner::new(model, dls, cross_entropy, 0.5, vec![Box::new(TrackResults::quiet())]);
//! learn.fit(20).unwrap();
//! let track = learn.callback::<TrackResults>().unwrap();
//! assert_eq!(track.last_valid().unwrap().acc, 1.0);
//! ```

pub mod callbacks;
mod data;
mod error;
mod event;
mod export;
mod fine_tune;
mod folder;
mod inference;
mod interpret;
mod learner;
pub mod metrics;
pub mod plot;
pub mod schedule;

pub use callbacks::{
    AugTransforms, Callback, CheckpointInfo, CsvLogger, CutMix, EarlyStopping, EpochStats, FinderStop, GradientClip,
    LrFindResult, LrFinder, LrSchedule, Mixup, Monitor, OneCycle, Overrides, PhaseRecord, Recorder, ReduceLROnPlateau,
    SaveModel, SetupLearner, Suggest, TerminateOnNaN, TrackResults, check_writable, find_coeffs,
};
pub use data::{Batch, BatchIter, BatchSource, InMemory, Loaders, mix};
pub use error::{CbResult, LearnerError, Result, Stop};
pub use event::{Cancel, Event};
pub use export::{ARCHITECTURES, EXPORT_FORMAT, ExportInfo, build_model, load_learner};
pub use fine_tune::{FitOneCycle, GradientAccumulation, LrRange, Splitter, head_split, resnet_split, single_group};
pub use inference::{Prediction, Preds, TEST_BS, Tta};
pub use interpret::{ClassificationInterpretation, TopLoss, show_batch, show_batch_denormalized};
pub use learner::{Learner, LearnerState, LossFn, OptFunc, sgd};
pub use metrics::{
    Accuracy, ErrorRate, F1Score, Metric, Precision, Recall, TopKAccuracy, metric_from_name, metrics_from_names,
};

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

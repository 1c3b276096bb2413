//! The error type of tiny-learner, and `Stop`, what a callback returns to cancel or to fail.

use std::path::PathBuf;

use crate::Cancel;

/// Everything that can go wrong in tiny-learner; lower crates' errors are wrapped unchanged.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    /// A tensor op failed.
    #[error(transparent)]
    Tensor(#[from] tiny_tensor::TensorError),
    /// A module, loss or safetensors call failed.
    #[error(transparent)]
    Nn(#[from] tiny_nn::NnError),
    /// An optimizer step or state load failed.
    #[error(transparent)]
    Optim(#[from] tiny_optim::OptimError),
    /// tiny-data failed to produce a batch (an unreadable image, say) or to open a folder.
    #[error(transparent)]
    Data(#[from] tiny_data::DataError),
    /// Another `BatchSource` failed to produce a batch.
    #[error("batch source: {0}")]
    Source(Box<dyn std::error::Error + Send + Sync>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A PNG could not be encoded.
    #[error("{path}: cannot write PNG: {msg}")]
    Png { path: PathBuf, msg: String },
    /// A file given to `load_learner` that is not a tiny export, or whose weights do not fit its architecture.
    #[error("{path}: not a tiny export: {msg}")]
    Export { path: PathBuf, msg: String },
    /// A checkpoint that lacks an entry or holds one that does not parse.
    #[error("{path}: not a tiny-learner checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A cancellation that no enclosing phase catches, such as `Cancel::Train` raised during validation.
    #[error("{0:?} was raised where nothing catches it")]
    UncaughtCancel(Cancel),
    /// A callback that reads per-epoch results ran without a `Recorder` to produce them.
    #[error("{callback} needs a Recorder among the learner's callbacks")]
    NeedsRecorder {
        /// The callback that asked.
        callback: &'static str,
    },
    /// The loss stopped being a finite number: the fit diverged (`TerminateOnNaN`).
    #[error(
        "the loss is {loss} at epoch {epoch}, {phase} batch {batch}: training diverged (try a lower learning rate)"
    )]
    NonFiniteLoss {
        /// The epoch, from 0.
        epoch: usize,
        /// `training` or `validation`.
        phase: &'static str,
        /// The batch within the phase, from 0 (on a GPU, the phase's last batch: the check reads one sum per phase).
        batch: usize,
        /// The loss, NaN or infinite.
        loss: f32,
    },
    /// A checkpoint would hold NaN or infinite values; nothing was written.
    #[error("{path}: not written, {count} values of {first} (and maybe other tensors) are not finite")]
    NonFiniteCheckpoint {
        /// The checkpoint that was not written.
        path: PathBuf,
        /// How many values of `first` are not finite.
        count: usize,
        /// The first tensor holding one.
        first: String,
    },
    /// A metric or monitor name that names nothing known; `known` lists the names that would do.
    #[error("unknown metric {name:?}; the known names are {}", known.join(", "))]
    UnknownMetric {
        /// The name asked for.
        name: String,
        /// The names known where it was asked for.
        known: Vec<String>,
    },
    /// An argument that is not valid, explained in `msg`.
    #[error("{what}: {msg}")]
    InvalidArgument {
        /// The function or option at fault.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
}

impl LearnerError {
    /// An `Io` error naming `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LearnerError {
        let path = path.into();
        move |source| LearnerError::Io { path, source }
    }
}

/// The result type of tiny-learner.
pub type Result<T> = std::result::Result<T, LearnerError>;

/// Why a callback or a step of the loop stopped: a typed cancellation that an enclosing phase
/// catches (fastai's `CancelBatchException` and friends), or a real error that ends the fit.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// A cancellation, caught by the phase of the same kind.
    #[error("cancelled: {0:?}")]
    Cancel(Cancel),
    /// A failure, passed up to the caller of `fit`.
    #[error(transparent)]
    Error(#[from] LearnerError),
}

/// What every callback method returns: `Ok(())`, `Err(Cancel::Fit.into())`, or an error.
pub type CbResult = std::result::Result<(), Stop>;

impl From<Cancel> for Stop {
    fn from(c: Cancel) -> Self {
        Stop::Cancel(c)
    }
}

impl From<tiny_tensor::TensorError> for Stop {
    fn from(e: tiny_tensor::TensorError) -> Self {
        Stop::Error(e.into())
    }
}

impl From<tiny_nn::NnError> for Stop {
    fn from(e: tiny_nn::NnError) -> Self {
        Stop::Error(e.into())
    }
}

impl From<tiny_optim::OptimError> for Stop {
    fn from(e: tiny_optim::OptimError) -> Self {
        Stop::Error(e.into())
    }
}

impl From<Stop> for LearnerError {
    /// A cancellation that reaches the caller becomes `UncaughtCancel`.
    fn from(s: Stop) -> Self {
        match s {
            Stop::Cancel(c) => LearnerError::UncaughtCancel(c),
            Stop::Error(e) => e,
        }
    }
}

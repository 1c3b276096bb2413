//! fastai's `callback/tracker.py`: callbacks that watch the loss or a metric and stop, save or lower the rate.

mod checkpoint;
mod early_stopping;
mod monitor;
mod reduce_lr;
mod terminate_nan;

pub(crate) use checkpoint::check_finite;
pub use checkpoint::{CheckpointInfo, Overrides, SaveModel, check_space, check_writable};
pub use early_stopping::EarlyStopping;
pub use monitor::Monitor;
pub use reduce_lr::ReduceLROnPlateau;
pub use terminate_nan::TerminateOnNaN;

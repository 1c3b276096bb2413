//! The error type of tiny-nn.

use std::path::PathBuf;

/// Everything that can go wrong in tiny-nn.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor op failed (a shape mismatch, say).
    #[error(transparent)]
    Tensor(#[from] tiny_tensor::TensorError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A safetensors file that cannot be parsed.
    #[error("{path}: not a valid safetensors file: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A saved state that does not fit the module: the first name or shape that differs.
    #[error("state does not match the module: {msg}")]
    StateMismatch { msg: String },
    /// An argument that is not valid for the layer, explained in `msg`.
    #[error("{layer}: {msg}")]
    InvalidArgument { layer: &'static str, msg: String },
}

/// The result type of tiny-nn.
pub type Result<T> = std::result::Result<T, NnError>;

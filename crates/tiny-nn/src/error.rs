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
    /// A state_dict that does not fit the module: every missing, unexpected and mis-shaped key.
    #[error("{0}")]
    StateDict(Box<crate::StateDictMismatch>),
    /// Tensors of a dtype tiny cannot convert to f32, each named with its dtype.
    #[error("{}: unsupported dtype for tiny, which converts float and integer tensors to f32: {}", path.display(), list_dtypes(tensors))]
    UnsupportedDtype { path: PathBuf, tensors: Vec<(String, String)> },
    /// An argument that is not valid for the layer, explained in `msg`.
    #[error("{layer}: {msg}")]
    InvalidArgument { layer: &'static str, msg: String },
}

fn list_dtypes(tensors: &[(String, String)]) -> String {
    tensors.iter().map(|(name, dtype)| format!("{name} ({dtype})")).collect::<Vec<_>>().join(", ")
}

/// The result type of tiny-nn.
pub type Result<T> = std::result::Result<T, NnError>;

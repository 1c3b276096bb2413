//! The error type of tiny-tensor: every fallible op returns `Result<_, TensorError>`.

use crate::Device;

/// Everything that can go wrong in a tensor op; each variant names the op at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// Two operands whose shapes do not fit together (elementwise broadcasting, matmul, conv, cat).
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    /// A buffer whose length does not match the number of elements of the requested shape.
    #[error("{op}: {len} values cannot fill shape {shape:?}")]
    ElementCount { op: &'static str, len: usize, shape: Vec<usize> },
    /// A dimension index outside `-rank..rank`.
    #[error("{op}: dimension {dim} is out of range for a tensor of rank {rank}")]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },
    /// An index (a class label, a slice start) outside its dimension.
    #[error("{op}: index {index} is out of range for a dimension of size {size}")]
    IndexOutOfRange { op: &'static str, index: usize, size: usize },
    /// An argument that is not valid for the op, explained in `msg`.
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    /// Operands that live on different devices.
    #[error("{op}: operands are on different devices ({lhs} and {rhs})")]
    DeviceMismatch { op: &'static str, lhs: Device, rhs: Device },
    /// `backward` was called on a tensor that is not a scalar.
    #[error("backward: needs a scalar (one-element) tensor, got shape {shape:?}")]
    NotScalar { shape: Vec<usize> },
    /// The tensor does not take part in autograd, so there is nothing to differentiate.
    #[error("backward: the tensor does not require grad; mark a leaf with `requires_grad(true)` first")]
    NoGrad,
    /// A device that this build or this machine cannot provide.
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable { device: Device, reason: String },
    /// A CUDA call that failed on the GPU (out of memory, a failed launch, a kernel that did not compile).
    #[error("{op}: CUDA error: {msg}")]
    Cuda { op: &'static str, msg: String },
}

/// The result type of tiny-tensor.
pub type Result<T> = std::result::Result<T, TensorError>;

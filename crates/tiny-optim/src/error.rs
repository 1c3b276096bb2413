//! The error type of tiny-optim.

/// Everything that can go wrong in tiny-optim.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A tensor op failed (a gradient on another device than its parameter, say).
    #[error(transparent)]
    Tensor(#[from] tiny_tensor::TensorError),
    /// An error from tiny-nn, passed through unchanged.
    #[error(transparent)]
    Nn(#[from] tiny_nn::NnError),
    /// An optimizer was built from an empty list of parameter groups.
    #[error("an optimizer needs at least one parameter group")]
    NoParamGroups,
    /// The same parameter is listed twice, so `step` would update it twice.
    #[error("parameter {group}.{index} is listed more than once in the optimizer's groups")]
    DuplicateParameter {
        /// The group of the second occurrence.
        group: usize,
        /// Its position within that group.
        index: usize,
    },
    /// A hyper-parameter outside the range its optimizer accepts (a negative learning rate, say).
    #[error("group {group}: {name} = {value} is not valid, expected {expected}")]
    InvalidHyperParameter {
        /// The group that holds the value.
        group: usize,
        /// The hyper-parameter's name, as in `ParamGroup`.
        name: &'static str,
        /// The offending value.
        value: f32,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// `split_groups` was asked for sizes that do not cut the optimizer's one group.
    #[error("cannot split the optimizer's parameters into groups: {msg}")]
    BadSplit {
        /// What does not fit.
        msg: String,
    },
    /// A saved state that does not fit this optimizer: the first kind, count, name or shape that differs.
    #[error("optimizer state does not match: {msg}")]
    StateMismatch {
        /// What differs, naming the group, parameter or entry.
        msg: String,
    },
}

/// The result type of tiny-optim.
pub type Result<T> = std::result::Result<T, OptimError>;

//! tiny-nn: `Parameter`, `Module` and the chapter's layers, losses and models.

mod error;
mod module;
mod parameter;

pub use error::{NnError, Result};
pub use module::{ForwardHook, HookHandle, Hooks, Module};
pub use parameter::Parameter;

//! Project chores for `tiny`, as a library so that the tests can drive them: fetching Imagenette and pretrained weights.
//!
//! The binary in `main.rs` only parses the subcommand name and hands the remaining arguments to the module that owns
//! the subcommand. Architecture invariant: xtask is the only crate of the workspace that touches the network.

pub mod fetch;
pub mod fetch_data;
pub mod fetch_weights;
pub mod flags;
pub mod progress;
pub mod untar;
pub mod verify;

//! The differentiable ops, one folder per kernel-backed family (API and backward in `mod.rs`, then `cpu.rs`,
//! `cuda.rs` and the `.cu` source), and `view.rs` for the ops that only change a layout.

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod foreach;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod reduce;
mod view;
pub(crate) mod warp;

pub use conv::Conv2dGeom;
pub use foreach::{MAX_OPS, MAX_REGISTERS, MAX_TENSORS, UpdateOp, UpdateProgram, foreach_update_};
pub use norm::RunningStats;
pub use warp::WarpPad;

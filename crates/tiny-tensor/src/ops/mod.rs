//! The differentiable ops, one folder per kernel-backed family (API and backward in `mod.rs`, then `cpu.rs`,
//! `cuda.rs` and the `.cu` source), and `view.rs` for the ops that only change a layout.

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod sgd;
mod view;
pub(crate) mod warp;

pub use conv::Conv2dGeom;
pub use norm::RunningStats;
pub use sgd::{SgdParam, SgdStep, sgd_update_all_};
pub use warp::WarpPad;

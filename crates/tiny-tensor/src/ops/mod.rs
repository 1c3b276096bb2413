//! The differentiable ops, one file per family; each op's backward sits right under its forward.

mod binary;
mod conv;
mod index;
mod loss;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod sgd;
mod unary;
mod view;
mod warp;

pub use norm::RunningStats;
pub use sgd::{SgdParam, SgdStep, sgd_update_all_};
pub use warp::WarpPad;

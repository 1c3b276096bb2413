//! CPU kernels on plain slices: strided elementwise maps, reductions, GEMM-based matmul and conv, pooling, warps.

pub(crate) mod alloc;
pub(crate) mod batchnorm;
mod conv;
mod conv_rgb;
mod elementwise;
mod index;
mod loss;
mod matmul;
mod pooling;
mod reduce;
mod strided;
mod warp;

pub use alloc::empty_cache;
pub(crate) use conv::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
pub(crate) use elementwise::{
    add_scaled_inplace, binary, copy_contiguous, copy_into, scale_inplace, sgd_update, unary,
};
pub(crate) use index::{argmax_rows, index_add, index_select};
pub(crate) use loss::{log_softmax_nll, log_softmax_nll_backward};
pub(crate) use matmul::matmul3;
pub(crate) use pooling::{avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};
pub(crate) use reduce::reduce;
pub(crate) use warp::warp_perspective;

use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads CPU kernels (GEMM, convolutions) may use; 0 restores the default, which is
/// every core.
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// How many threads CPU kernels use.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
}

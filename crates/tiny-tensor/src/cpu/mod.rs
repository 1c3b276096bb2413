//! The CPU backend: the `Cpu` value whose kernels (in each `ops/*/cpu.rs`) run on host slices, the buffer pool and threads.

pub(crate) mod alloc;
pub(crate) mod bf16;
pub(crate) mod parallel;
mod pool;
pub(crate) mod simd;
pub(crate) mod strided;

pub use alloc::empty_cache;
pub use bf16::{Bf16Kernel, amx_tiles, bf16_kernel};

use std::sync::atomic::{AtomicUsize, Ordering};

/// The CPU as a backend: every op family's kernel trait is implemented for it in `ops/<family>/cpu.rs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cpu;

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads CPU kernels (GEMM, convolutions, pooling, batchnorm, dense elementwise ops, the
/// fused optimizer update) may use; 0 restores the default, which is every core.
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

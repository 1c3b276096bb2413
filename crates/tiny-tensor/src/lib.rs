//! tiny-tensor: f32 tensors with strided views, broadcasting, reverse-mode automatic differentiation and bf16
//! autocast.
//!
//! This is the bottom crate of `tiny`, the Rust version of fastbook chapter 19 ("A fastai Learner
//! from Scratch"). A [`Tensor`] is a cheap handle to a view of shared storage. Every op returns a
//! `Result`, records itself in the autograd graph when an input requires grad, and has its backward
//! right under its forward. Each kernel-backed op family has a folder in `ops/` (the API, the backward
//! and the family's kernel trait in `mod.rs`; the CPU kernels in `cpu.rs`, on the `gemm` crate for
//! matmul and convolutions; the CUDA kernels in `cuda.rs` and the `.cu` source, with the `cuda` feature).
//! The device is matched in exactly one place, `backend.rs`; `cpu/` and `cuda/` hold what the two
//! backends share (buffer pool and threads; the opened GPU, its streams and kernel loading).
//!
//! ```
//! use tiny_tensor::Tensor;
//! let w = Tensor::from_vec(vec![0.5, -1.0], &[2, 1]).unwrap().set_requires_grad(true);
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let loss = x.matmul(&w).unwrap().relu().unwrap().sum_all().unwrap();
//! loss.backward().unwrap();
//! assert_eq!(w.grad().unwrap().shape(), &[2, 1]);
//! ```

mod autocast;
mod autograd;
mod backend;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
// Without the feature, `crate::cuda` is the uninhabited stand-in, so the device match needs no `#[cfg]`.
#[cfg(not(feature = "cuda"))]
#[path = "cuda_absent.rs"]
mod cuda;
mod device;
mod error;
pub mod gradcheck;
mod layout;
mod ops;
mod storage;
mod tensor;

pub use autocast::{AutocastGuard, Precision, autocast, autocast_precision};
pub use autograd::{NoGradGuard, is_grad_enabled, no_grad};
pub use cpu::{Bf16Kernel, amx_tiles, bf16_kernel, empty_cache, num_threads, set_num_threads};
pub use device::Device;
pub use error::{Result, TensorError};
pub use layout::{Layout, broadcast_shapes, contiguous_strides};
pub use ops::{
    Conv2dGeom, MAX_OPS, MAX_REGISTERS, MAX_TENSORS, RunningStats, UpdateOp, UpdateProgram, WarpPad, foreach_update_,
};
pub use storage::{CudaStorage, Element, Storage};
pub use tensor::Tensor;

/// What most users of tiny-tensor need, in one import (as `burn::prelude`): `use tiny_tensor::prelude::*;`.
pub mod prelude {
    pub use crate::{Device, Precision, Tensor, TensorError, autocast, no_grad};
}

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

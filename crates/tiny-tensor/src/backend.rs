//! The one place that dispatches on the device: a tensor's device picks the backend whose kernels run.
//!
//! A backend is a value that implements every op family's kernel trait (`ops/*/mod.rs`): [`cpu::Cpu`] for
//! host memory and, for a GPU, the opened `cuda::Gpu` (its context, streams, cuBLAS handle and kernels).
//! Without the `cuda` feature `cuda::Gpu` is an uninhabited type whose kernels are `match *self {}`, and
//! opening one is an error, so the match below has no `#[cfg]` arms.

use crate::ops::conv::ConvKernels;
use crate::ops::elementwise::ElementwiseKernels;
use crate::ops::foreach::ForeachKernels;
use crate::ops::index::IndexKernels;
use crate::ops::loss::LossKernels;
use crate::ops::matmul::MatmulKernels;
use crate::ops::norm::NormKernels;
use crate::ops::pool::PoolKernels;
use crate::ops::reduce::ReduceKernels;
use crate::ops::warp::WarpKernels;
use crate::{Device, Result, Tensor, TensorError, cpu, cuda};

/// Everything a device provides: the kernels of every op family, behind one object.
pub(crate) trait Backend:
    ElementwiseKernels
    + ReduceKernels
    + MatmulKernels
    + ConvKernels
    + PoolKernels
    + NormKernels
    + IndexKernels
    + LossKernels
    + WarpKernels
    + ForeachKernels
    + Sync
{
}

impl Backend for cpu::Cpu {}
impl Backend for cuda::Gpu {}

/// The backend of `device`; a GPU is opened (and its kernels loaded) on first use.
pub(crate) fn of(device: Device) -> Result<&'static dyn Backend> {
    match device {
        Device::Cpu => Ok(&cpu::Cpu),
        Device::Cuda(ordinal) => Ok(cuda::gpu(ordinal)?),
    }
}

/// The backend of the device `x` lives on.
pub(crate) fn on(x: &Tensor) -> Result<&'static dyn Backend> {
    if x.is_released() {
        return Err(released("a kernel"));
    }
    of(x.device())
}

/// The backend of the device `x` lives on, after checking that each of `others` lives there too.
pub(crate) fn on_all(op: &'static str, x: &Tensor, others: &[&Tensor]) -> Result<&'static dyn Backend> {
    if others.iter().any(|o| o.is_released()) {
        return Err(released(op));
    }
    if let Some(o) = others.iter().find(|o| o.device() != x.device()) {
        return Err(TensorError::DeviceMismatch { op, lhs: x.device(), rhs: o.device() });
    }
    on(x)
}

/// The error for a kernel given a graph handle whose values were released: a backward that reads more than
/// its op's `Reads` says, a bug in this crate rather than bad input.
fn released(op: &'static str) -> TensorError {
    TensorError::InvalidArgument {
        op,
        msg: "read the values of a tensor that the graph had released (its op's Reads said it would not)".into(),
    }
}

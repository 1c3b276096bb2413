//! The CUDA stand-in without the `cuda` feature: uninhabited types, so every GPU arm compiles and none can run.
//!
//! `crate::cuda` is this module when tiny-tensor is built without `cuda`. Opening a GPU fails with a clear
//! error, so no [`Gpu`] value ever exists, and each kernel trait's methods are `match *self {}`; no
//! [`CudaStorage`] exists either.

use crate::autocast::Precision;
use crate::layout::Layout;
use crate::ops::conv::{Conv2dGeom, ConvKernels};
use crate::ops::elementwise::{BinaryOp, ElementwiseKernels, UnaryOp, Update};
use crate::ops::foreach::{ForeachKernels, UpdateProgram};
use crate::ops::index::IndexKernels;
use crate::ops::loss::LossKernels;
use crate::ops::matmul::MatmulKernels;
use crate::ops::norm::{NormKernels, RunningStats};
use crate::ops::pool::PoolKernels;
use crate::ops::reduce::{ReduceKernels, ReduceOp};
use crate::ops::warp::{WarpKernels, WarpPad};
use crate::storage::Indices;
use crate::{Device, Result, Storage, Tensor, TensorError};

/// A GPU; without the `cuda` feature there is none.
#[derive(Debug)]
pub enum Gpu {}

/// GPU memory; without the `cuda` feature there is none (the `Infallible` field has no value, so neither
/// has this type; `T` only names what the buffer would hold).
#[derive(Debug)]
pub struct CudaStorage<T = f32> {
    never: std::convert::Infallible,
    element: std::marker::PhantomData<T>,
}

impl<T> CudaStorage<T> {
    pub(crate) fn device(&self) -> Device {
        match self.never {}
    }

    pub(crate) fn len(&self) -> usize {
        match self.never {}
    }

    pub(crate) fn not_on_host(&self) -> ! {
        match self.never {}
    }
}

/// Always the error that tiny-tensor was built without the `cuda` feature.
pub(crate) fn gpu(ordinal: usize) -> Result<&'static Gpu> {
    Err(TensorError::DeviceUnavailable {
        device: Device::Cuda(ordinal),
        reason: "tiny-tensor was built without the `cuda` feature; build with `--features cuda`".into(),
    })
}

impl ElementwiseKernels for Gpu {
    fn unary(&self, _: &Tensor, _: UnaryOp, _: [f32; 2]) -> Result<Tensor> {
        match *self {}
    }
    fn binary(&self, _: &Tensor, _: &Layout, _: &Tensor, _: &Layout, _: BinaryOp) -> Result<Tensor> {
        match *self {}
    }
    fn update(&self, _: &Tensor, _: Option<(&Tensor, &Layout)>, _: Update) -> Result<()> {
        match *self {}
    }
    fn contiguous(&self, _: &Tensor) -> Result<Tensor> {
        match *self {}
    }
    fn to_vec(&self, _: &Tensor) -> Result<Vec<f32>> {
        match *self {}
    }
    fn copy_from_host(&self, _: &Tensor) -> Result<Tensor> {
        match *self {}
    }
}

impl ReduceKernels for Gpu {
    fn reduce(&self, _: &Tensor, _: &[bool], _: ReduceOp) -> Result<Tensor> {
        match *self {}
    }
}

impl MatmulKernels for Gpu {
    fn matmul3(&self, _: &Tensor, _: &Layout, _: &Tensor, _: &Layout, _: Precision) -> Result<Tensor> {
        match *self {}
    }
}

impl ConvKernels for Gpu {
    fn conv2d(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: Option<&Tensor>,
        _: bool,
        _: &Conv2dGeom,
        _: Precision,
    ) -> Result<Storage> {
        match *self {}
    }
    fn conv2d_backward_input(&self, _: &Tensor, _: &Tensor, _: &Conv2dGeom, _: Precision) -> Result<Storage> {
        match *self {}
    }
    fn conv2d_backward_weight(&self, _: &Tensor, _: &Tensor, _: &Conv2dGeom, _: Precision) -> Result<Storage> {
        match *self {}
    }
}

impl PoolKernels for Gpu {
    fn max_pool2d(&self, _: &Tensor, _: &Conv2dGeom) -> Result<(Storage, Indices)> {
        match *self {}
    }
    fn max_pool2d_backward(&self, _: &Tensor, _: &Indices, _: &Conv2dGeom) -> Result<Storage> {
        match *self {}
    }
    fn avg_pool2d(&self, _: &Tensor, _: &Conv2dGeom) -> Result<Storage> {
        match *self {}
    }
    fn avg_pool2d_backward(&self, _: &Tensor, _: &Conv2dGeom) -> Result<Storage> {
        match *self {}
    }
}

impl NormKernels for Gpu {
    fn batch_norm_stats(
        &self,
        _: &Tensor,
        _: (usize, usize, usize),
        _: &Tensor,
        _: &Tensor,
        _: f32,
        _: Option<RunningStats<'_>>,
        _: f32,
    ) -> Result<[Storage; 5]> {
        match *self {}
    }
    fn batch_norm_affine(
        &self,
        _: &Tensor,
        _: (usize, usize, usize),
        _: &Tensor,
        _: &Tensor,
        _: bool,
    ) -> Result<Storage> {
        match *self {}
    }
    fn batch_norm_backward(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: (usize, usize, usize),
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Storage, Storage, Storage)> {
        match *self {}
    }
}

impl IndexKernels for Gpu {
    fn index_select(&self, _: &Tensor, _: usize, _: usize, _: usize, _: &[u32]) -> Result<Tensor> {
        match *self {}
    }
    fn index_add(&self, _: &Tensor, _: usize, _: usize, _: usize, _: &[u32]) -> Result<Tensor> {
        match *self {}
    }
}

impl LossKernels for Gpu {
    fn log_softmax_nll(&self, _: &Tensor, _: &[u32], _: f32) -> Result<(Tensor, Tensor, Indices)> {
        match *self {}
    }
    fn log_softmax_nll_backward(&self, _: &Tensor, _: &Tensor, _: &Tensor, _: &Indices, _: f32) -> Result<Tensor> {
        match *self {}
    }
}

impl WarpKernels for Gpu {
    fn warp_perspective(&self, _: &Tensor, _: &[[f32; 9]], _: WarpPad, _: [usize; 4]) -> Result<Storage> {
        match *self {}
    }
}

impl ForeachKernels for Gpu {
    fn foreach_update(&self, _: &[&[&Tensor]], _: &UpdateProgram) -> Result<()> {
        match *self {}
    }
}

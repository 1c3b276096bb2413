//! The GPU's max and average pooling on channels-last data (`pool.cu`), forward and backward.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::PoolKernels;
use crate::cuda::{DeviceIndices, Gpu, err, gpu_of, rows, view};
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv::cuda::kgeom;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor};

impl PoolKernels for Gpu {
    fn max_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, Indices)> {
        let (out, idx) = max_pool2d(x, g)?;
        Ok((out, Indices::Cuda(idx)))
    }

    fn max_pool2d_backward(&self, dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Storage> {
        max_pool2d_backward(dout, idx.gpu("max_pool2d_backward")?, g)
    }

    fn avg_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        avg_pool2d(x, g)
    }

    fn avg_pool2d_backward(&self, dout: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        avg_pool2d_backward(dout, g)
    }
}

/// Launches one of the pooling kernels over `pixels` pixels of `g.c` channels.
fn pool_launch(
    gpu: &Gpu,
    name: &'static str,
    pixels: usize,
    g: &Conv2dGeom,
    input: &Tensor,
    idx: Option<&CudaSlice<u32>>,
    out: &mut CudaSlice<f32>,
    out_idx: Option<&mut CudaSlice<u32>>,
) -> Result<()> {
    let s = input.storage();
    let src = view(&s, input);
    let (p, kg) = (pixels as i64, kgeom(g));
    let mut b = gpu.stream.launch_builder(gpu.func(name));
    b.arg(&p).arg(&kg).arg(&src);
    if let Some(i) = idx {
        b.arg(i);
    }
    b.arg(out);
    if let Some(i) = out_idx {
        b.arg(i);
    }
    unsafe { b.launch(rows(pixels, g.c)) }.map_err(err(name))?;
    Ok(())
}

/// Max pooling of a contiguous NHWC input: the `[n, oh, ow, c]` output and the winning input index of each.
fn max_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, DeviceIndices)> {
    let gpu = gpu_of(x)?;
    let pixels = g.n * g.oh() * g.ow();
    let mut out = gpu.alloc::<f32>(pixels * g.c)?;
    let mut idx = gpu.alloc::<u32>(pixels * g.c)?;
    pool_launch(gpu, "max_pool_f32", pixels, g, x, None, &mut out, Some(&mut idx))?;
    Ok((gpu.storage(out), DeviceIndices(idx)))
}

fn max_pool2d_backward(dout: &Tensor, idx: &DeviceIndices, g: &Conv2dGeom) -> Result<Storage> {
    let gpu = gpu_of(dout)?;
    let pixels = g.n * g.h * g.w;
    let mut dx = gpu.alloc::<f32>(pixels * g.c)?;
    pool_launch(gpu, "max_pool_backward_f32", pixels, g, dout, Some(&idx.0), &mut dx, None)?;
    Ok(gpu.storage(dx))
}

fn avg_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
    let gpu = gpu_of(x)?;
    let pixels = g.n * g.oh() * g.ow();
    let mut out = gpu.alloc::<f32>(pixels * g.c)?;
    pool_launch(gpu, "avg_pool_f32", pixels, g, x, None, &mut out, None)?;
    Ok(gpu.storage(out))
}

fn avg_pool2d_backward(dout: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
    let gpu = gpu_of(dout)?;
    let pixels = g.n * g.h * g.w;
    let mut dx = gpu.alloc::<f32>(pixels * g.c)?;
    pool_launch(gpu, "avg_pool_backward_f32", pixels, g, dout, None, &mut dx, None)?;
    Ok(gpu.storage(dx))
}

//! The GPU's max and average pooling on channels-last data (`pool.cu`), forward and backward.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::PoolKernels;
use crate::cuda::{Gpu, err, rows, view};
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv::cuda::kgeom;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor};

impl PoolKernels for Gpu {
    /// Max pooling of a contiguous NHWC input: the `[n, oh, ow, c]` output and the winning input index of each.
    fn max_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, Indices)> {
        let pixels = g.n * g.oh() * g.ow();
        let mut out = self.alloc::<f32>(pixels * g.c)?;
        let mut idx = self.alloc::<u32>(pixels * g.c)?;
        pool_launch(self, "max_pool_f32", pixels, g, x, None, &mut out, Some(&mut idx))?;
        Ok((self.storage(out), self.storage(idx)))
    }

    fn max_pool2d_backward(&self, dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Storage> {
        let idx = idx.on_gpu("max_pool2d_backward")?;
        let pixels = g.n * g.h * g.w;
        let mut dx = self.alloc::<f32>(pixels * g.c)?;
        pool_launch(self, "max_pool_backward_f32", pixels, g, dout, Some(&idx.slice), &mut dx, None)?;
        Ok(self.storage(dx))
    }

    fn avg_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        let gpu = self;
        let pixels = g.n * g.oh() * g.ow();
        let mut out = gpu.alloc::<f32>(pixels * g.c)?;
        pool_launch(gpu, "avg_pool_f32", pixels, g, x, None, &mut out, None)?;
        Ok(gpu.storage(out))
    }

    fn avg_pool2d_backward(&self, dout: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        let gpu = self;
        let pixels = g.n * g.h * g.w;
        let mut dx = gpu.alloc::<f32>(pixels * g.c)?;
        pool_launch(gpu, "avg_pool_backward_f32", pixels, g, dout, None, &mut dx, None)?;
        Ok(gpu.storage(dx))
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

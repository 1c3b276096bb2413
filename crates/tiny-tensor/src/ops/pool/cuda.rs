//! The GPU's max and average pooling on channels-last data (`pool.cu`), forward and backward.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::PoolKernels;
use crate::cuda::strided::u32_of;
use crate::cuda::{Gpu, err, rows, view};
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv::cuda::kgeom;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor};

impl PoolKernels for Gpu {
    /// Max pooling of a contiguous NHWC input: the `[n, oh, ow, c]` output and the winning input index of each.
    fn max_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, Indices)> {
        winners_fit("max_pool2d", g)?;
        let pixels = g.n * g.oh() * g.ow();
        let mut out = self.alloc::<f32>(pixels * g.c)?;
        let mut idx = self.alloc::<u32>(pixels * g.c)?;
        pool_launch(self, "max_pool_f32", pixels, g, x, None, &mut out, Some(&mut idx))?;
        Ok((self.storage(out), self.storage(idx)))
    }

    fn max_pool2d_backward(&self, dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Storage> {
        winners_fit("max_pool2d_backward", g)?;
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

/// Checks that every element of the `[n, h, w, c]` input has a `u32` index, as a max-pool winner is kept (also the
/// geometry's sizes, before anything is allocated).
fn winners_fit(op: &'static str, g: &Conv2dGeom) -> Result<()> {
    kgeom(op, g)?;
    let elements = g.n.saturating_mul(g.h).saturating_mul(g.w).saturating_mul(g.c);
    u32_of(op, "input elements (n * h * w * c, each winner's index)", elements).map(|_| ())
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
    let (p, kg) = (pixels as i64, kgeom(name, g)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winner_indices_past_32_bits_are_errors() {
        // 2 x 64 x 65,536 x 512 = 2^32 input elements: one more than a u32 index reaches.
        let g = |w: usize| Conv2dGeom { n: 2, c: 512, h: 64, w, f: 512, kh: 2, kw: 2, stride: 2, pad: 0 };
        winners_fit("max_pool2d", &g(65_535)).unwrap();
        let err = winners_fit("max_pool2d", &g(65_536)).unwrap_err().to_string();
        assert!(err.starts_with("max_pool2d:") && err.contains("4294967296"), "{err}");
    }
}

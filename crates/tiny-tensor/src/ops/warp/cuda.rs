//! Perspective warps on the GPU (`warp.cu`): the per-image matrices go up as a small buffer.

use cudarc::driver::PushKernelArg;

use super::{WarpKernels, WarpPad};
use crate::cuda::{Gpu, err, grid, view};
use crate::{Result, Storage, Tensor};

impl WarpKernels for Gpu {
    /// Warps each image `b` of contiguous channels-last `x` (`[n, h, w, c]`, `dims` = `[n, c, h, w]`) through
    /// `mats[b]` into a new channels-last buffer.
    fn warp_perspective(&self, x: &Tensor, mats: &[[f32; 9]], pad: WarpPad, dims: [usize; 4]) -> Result<Storage> {
        let [n, c, h, w] = dims;
        let g = self;
        let pixels = n * h * w;
        let mut out = g.alloc::<f32>(pixels * c)?;
        if pixels * c > 0 {
            let flat: Vec<f32> = mats.iter().flatten().copied().collect();
            let dev_mats = g.upload(&flat)?;
            let s = x.storage();
            let xs = view(&s, x);
            let (p, hi, wi, ci) = (pixels as i64, h as i64, w as i64, c as i64);
            let reflection = i32::from(pad == WarpPad::Reflection);
            let mut b = g.stream.launch_builder(g.func("warp_perspective_f32"));
            b.arg(&p).arg(&hi).arg(&wi).arg(&ci).arg(&dev_mats).arg(&reflection).arg(&xs).arg(&mut out);
            unsafe { b.launch(grid(pixels)) }.map_err(err("warp_perspective"))?;
        }
        Ok(g.storage(out))
    }
}

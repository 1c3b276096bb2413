//! The GPU's gathers and scatter-adds along one dimension (`index.cu`); indices come from the host.

use cudarc::driver::PushKernelArg;

use super::IndexKernels;
use crate::cuda::{Gpu, err, grid, view, wrap};
use crate::layout::Layout;
use crate::{Result, Tensor};

impl IndexKernels for Gpu {
    fn index_select(&self, x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
        launch(self, x, outer, size, inner, idx, false)
    }

    fn index_add(&self, g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
        launch(self, g, outer, size, inner, idx, true)
    }
}

/// `index_f32` over `[outer, idx.len(), inner]`: a gather from `src` or (`scatter`) an add into zeros.
fn launch(
    g: &Gpu,
    src: &Tensor,
    outer: usize,
    size: usize,
    inner: usize,
    idx: &[u32],
    scatter: bool,
) -> Result<Tensor> {
    let total = outer * idx.len() * inner;
    let shape = if scatter { [outer, size, inner] } else { [outer, idx.len(), inner] };
    let out_len = shape.iter().product();
    let mut out = if scatter { g.zeros(out_len)? } else { g.alloc::<f32>(out_len)? };
    if total > 0 {
        let dev_idx = g.upload_u32(idx)?;
        let s = src.storage();
        let data = view(&s, src);
        let (t, sz, inn, ni, sc) = (total as i64, size as i64, inner as i64, idx.len() as i64, i32::from(scatter));
        let mut b = g.stream.launch_builder(g.func("index_f32"));
        b.arg(&t).arg(&data).arg(&dev_idx).arg(&mut out).arg(&sz).arg(&inn).arg(&ni).arg(&sc);
        unsafe { b.launch(grid(total)) }.map_err(err("index"))?;
    }
    Ok(wrap(g, out, Layout::contiguous(&shape)))
}

//! Gathers and scatter-adds along one dimension on the GPU (`kernels/index.cu`); indices come from the host.

use cudarc::driver::PushKernelArg;

use super::{err, gpu_of, grid, view, wrap};
use crate::layout::Layout;
use crate::{Result, Tensor};

/// `index_f32` over `[outer, idx.len(), inner]`: a gather from `src` or (`scatter`) an add into zeros.
fn launch(src: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32], scatter: bool) -> Result<Tensor> {
    let g = gpu_of(src)?;
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

/// `out[o, i, :] = x[o, idx[i], :]` over a contiguous `[outer, size, inner]` tensor.
pub(crate) fn index_select(x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
    launch(x, outer, size, inner, idx, false)
}

/// `out[o, idx[i], :] += g[o, i, :]` into zeros of `[outer, size, inner]`.
pub(crate) fn index_add(g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
    launch(g, outer, size, inner, idx, true)
}

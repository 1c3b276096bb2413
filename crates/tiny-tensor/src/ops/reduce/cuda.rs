//! The GPU's reductions (`reduce.cu`): a coalesced 2-D pass with partial sums where the kept elements form one
//! unit-stride run or nothing is kept, else one block per output element.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{ReduceKernels, ReduceOp};
use crate::cuda::strided::plan;
use crate::cuda::{Gpu, columns, err, slice, wrap};
use crate::layout::Layout;
use crate::{Result, Tensor};

impl ReduceKernels for Gpu {
    /// Reduces over the dimensions flagged in `reduce`; the result is contiguous with those dimensions kept as 1.
    fn reduce(&self, x: &Tensor, reduce: &[bool], op: ReduceOp) -> Result<Tensor> {
        let g = self;
        let l = x.layout();
        let (kept, reduced): (Vec<usize>, Vec<usize>) = (0..l.rank()).partition(|&d| !reduce[d]);
        let pick = |dims: &[usize], of: &[usize]| dims.iter().map(|&d| of[d]).collect::<Vec<usize>>();
        let out_n: usize = pick(&kept, &l.shape).iter().product();
        let red_n: usize = pick(&reduced, &l.shape).iter().product();
        let out_shape: Vec<usize> = (0..l.rank()).map(|d| if reduce[d] { 1 } else { l.shape[d] }).collect();
        let mut out = g.alloc::<f32>(out_n)?;
        if out_n == 0 {
            return Ok(wrap(g, out, Layout::contiguous(&out_shape)));
        }
        let code = op as i32;
        let s = x.storage();
        // The kept elements as one unit-stride run in their own order, or nothing kept (a full reduction): the
        // columns kernel. The reduced dimensions are walked in any order.
        let (kshape, kst) = plan(&pick(&kept, &l.shape), [&pick(&kept, &l.strides)], [0], false)?;
        if red_n > 0 && kshape.dense_len(&kst).is_some() {
            let (rows, [rs]) = plan(&pick(&reduced, &l.shape), [&pick(&reduced, &l.strides)], [l.offset], true)?;
            let cfg = columns(red_n, out_n, None);
            let parts = cfg.grid_dim.1 as usize;
            // One block of rows writes the result itself; more write partial results, combined in a second pass.
            let mut partial = g.alloc::<f64>(if parts > 1 { parts * out_n } else { 0 })?;
            let (r, k) = (red_n as i64, out_n as i64);
            let mut b = g.stream.launch_builder(g.func("reduce_cols_f32"));
            b.arg(&r).arg(&k).arg(&rows).arg(&rs).arg(slice(&s)).arg(&mut out).arg(&mut partial).arg(&code);
            unsafe { b.launch(cfg) }.map_err(err("reduce"))?;
            if parts > 1 {
                let p = parts as i64;
                let threads = parts.next_power_of_two().clamp(32, 256) as u32;
                let cfg = LaunchConfig {
                    grid_dim: (out_n.min(1 << 20) as u32, 1, 1),
                    block_dim: (threads, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = g.stream.launch_builder(g.func("reduce_finish_f32"));
                b.arg(&p).arg(&k).arg(&partial).arg(&mut out).arg(&code);
                unsafe { b.launch(cfg) }.map_err(err("reduce"))?;
            }
            return Ok(wrap(g, out, Layout::contiguous(&out_shape)));
        }
        // The kept dimensions first, then the reduced ones: output o reduces elements o * red_n .. (o + 1) * red_n.
        let order: Vec<usize> = kept.iter().chain(&reduced).copied().collect();
        let (kshape, [xs]) = plan(&pick(&order, &l.shape), [&pick(&order, &l.strides)], [l.offset], false)?;
        let threads = red_n.next_power_of_two().clamp(32, 256) as u32;
        let cfg = LaunchConfig {
            grid_dim: (out_n.min(1 << 20) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let (o, r) = (out_n as i64, red_n as i64);
        let mut b = g.stream.launch_builder(g.func("reduce_f32"));
        b.arg(&o).arg(&r).arg(&kshape).arg(&xs).arg(slice(&s)).arg(&mut out).arg(&code);
        unsafe { b.launch(cfg) }.map_err(err("reduce"))?;
        Ok(wrap(g, out, Layout::contiguous(&out_shape)))
    }
}

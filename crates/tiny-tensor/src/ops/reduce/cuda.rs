//! The GPU's reductions (`reduce.cu`): one block per output element, its threads along the reduced elements.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{ReduceKernels, ReduceOp};
use crate::cuda::strided::plan;
use crate::cuda::{Gpu, err, slice, wrap};
use crate::layout::Layout;
use crate::{Result, Tensor};

impl ReduceKernels for Gpu {
    /// Reduces over the dimensions flagged in `reduce`; the result is contiguous with those dimensions kept as 1.
    fn reduce(&self, x: &Tensor, reduce: &[bool], op: ReduceOp) -> Result<Tensor> {
        let g = self;
        let l = x.layout();
        let (mut shape, mut strides, mut out_shape) = (Vec::new(), Vec::new(), Vec::new());
        for d in (0..l.rank()).filter(|&d| !reduce[d]) {
            shape.push(l.shape[d]);
            strides.push(l.strides[d]);
        }
        let out_n: usize = shape.iter().product();
        for d in (0..l.rank()).filter(|&d| reduce[d]) {
            shape.push(l.shape[d]);
            strides.push(l.strides[d]);
        }
        let red_n: usize = l.shape.iter().zip(reduce).filter(|(_, r)| **r).map(|(s, _)| s).product();
        for d in 0..l.rank() {
            out_shape.push(if reduce[d] { 1 } else { l.shape[d] });
        }
        let mut out = g.alloc::<f32>(out_n)?;
        if out_n > 0 {
            let (kshape, [xs]) = plan(&shape, [&strides], [l.offset], false)?;
            let threads = red_n.next_power_of_two().clamp(32, 256) as u32;
            let cfg = LaunchConfig {
                grid_dim: (out_n.min(1 << 20) as u32, 1, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: 0,
            };
            let code = op as i32;
            let (o, r) = (out_n as i64, red_n as i64);
            let s = x.storage();
            let mut b = g.stream.launch_builder(g.func("reduce_f32"));
            b.arg(&o).arg(&r).arg(&kshape).arg(&xs).arg(slice(&s)).arg(&mut out).arg(&code);
            unsafe { b.launch(cfg) }.map_err(err("reduce"))?;
        }
        Ok(wrap(g, out, Layout::contiguous(&out_shape)))
    }
}

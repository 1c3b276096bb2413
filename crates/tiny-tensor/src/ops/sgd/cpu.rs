//! SGD steps on the CPU: one fused pass over a strided parameter, its gradient and its momentum buffer.

use super::{SgdKernels, SgdStep};
use crate::cpu::Cpu;
use crate::cpu::strided::for_each_run;
use crate::layout::Layout;
use crate::{Result, Tensor};

impl SgdKernels for Cpu {
    fn sgd_update(&self, p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, step: &SgdStep) -> Result<()> {
        let s = g.storage();
        let mut d = p.storage_mut();
        match buffer {
            Some(b) => {
                let mut bs = b.storage_mut();
                let buf = Some((bs.host_mut(), b.layout()));
                sgd_update(d.host_mut(), p.layout(), s.host(), g.layout(), buf, step);
            }
            None => sgd_update(d.host_mut(), p.layout(), s.host(), g.layout(), None, step),
        }
        Ok(())
    }

    fn sgd_update_all(&self, items: &[(&Tensor, &Tensor, Option<&Tensor>, bool)], step: &SgdStep) -> Result<()> {
        for &(p, g, b, first) in items {
            self.sgd_update(p, g, b, &SgdStep { first, ..*step })?;
        }
        Ok(())
    }
}

/// One SGD step of one element: returns the new parameter and updates the momentum buffer `b` (ignored
/// without `has_buffer`). The formula of [`crate::Tensor::sgd_update_`].
#[inline(always)]
fn sgd_element(p: f32, g: f32, b: &mut f32, has_buffer: bool, s: &SgdStep) -> f32 {
    let mut d = g + s.weight_decay * p;
    if has_buffer {
        *b = if s.first { d } else { s.momentum * *b + (1.0 - s.dampening) * d };
        d = if s.nesterov { d + s.momentum * *b } else { *b };
    }
    p - s.lr * d
}

/// One fused SGD step over strided `p` and `g` (same shape), with an optional momentum buffer.
fn sgd_update(p: &mut [f32], pl: &Layout, g: &[f32], gl: &Layout, buffer: Option<(&mut [f32], &Layout)>, s: &SgdStep) {
    match buffer {
        Some((b, bl)) => {
            let (strides, offsets) = ([&pl.strides[..], &gl.strides, &bl.strides], [pl.offset, gl.offset, bl.offset]);
            for_each_run(&pl.shape, strides, offsets, |len, [o, i, k], [so, si, sk]| {
                for j in 0..len {
                    p[o + j * so] = sgd_element(p[o + j * so], g[i + j * si], &mut b[k + j * sk], true, s);
                }
            });
        }
        None => {
            for_each_run(&pl.shape, [&pl.strides, &gl.strides], [pl.offset, gl.offset], |len, [o, i], [so, si]| {
                let mut unused = 0.0;
                for j in 0..len {
                    p[o + j * so] = sgd_element(p[o + j * so], g[i + j * si], &mut unused, false, s);
                }
            });
        }
    }
}

//! The CPU's max and average pooling on channels-last `[n, h, w, c]` data, with their backward passes.

use super::PoolKernels;
use crate::cpu::{Cpu, alloc};
use crate::ops::conv::Conv2dGeom;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor};

impl PoolKernels for Cpu {
    fn max_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, Indices)> {
        let (out, idx) = max_pool2d(&x.storage().host()[x.layout().offset..], g);
        Ok((Storage::Cpu(out), Indices::Cpu(idx)))
    }

    fn max_pool2d_backward(&self, dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Storage> {
        let idx = idx.on_host("max_pool2d_backward")?;
        Ok(Storage::Cpu(max_pool2d_backward(&dout.storage().host()[dout.layout().offset..], idx, g)))
    }

    fn avg_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        Ok(Storage::Cpu(avg_pool2d(&x.storage().host()[x.layout().offset..], g)))
    }

    fn avg_pool2d_backward(&self, dout: &Tensor, g: &Conv2dGeom) -> Result<Storage> {
        Ok(Storage::Cpu(avg_pool2d_backward(&dout.storage().host()[dout.layout().offset..], g)))
    }
}

/// Calls `f(out_pixel, in_pixel)` for every window position inside the image, where pixels are flat
/// `n*h*w`-style indices (multiply by `c` for the element offset).
fn windows(g: &Conv2dGeom, mut f: impl FnMut(usize, usize)) {
    let (oh, ow) = (g.oh(), g.ow());
    for n in 0..g.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (n * oh + oy) * ow + ox;
                for ky in 0..g.kh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for kx in 0..g.kw {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            f(o, (n * g.h + iy as usize) * g.w + ix as usize);
                        }
                    }
                }
            }
        }
    }
}

/// Max pooling; also returns, per output element, the flat index of the input element chosen.
fn max_pool2d(x: &[f32], g: &Conv2dGeom) -> (Vec<f32>, Vec<u32>) {
    let c = g.c;
    let len = g.n * g.oh() * g.ow() * c;
    let mut out = alloc::take_filled(len, f32::NEG_INFINITY);
    let mut idx = vec![0u32; len];
    windows(g, |o, i| {
        for k in 0..c {
            let v = x[i * c + k];
            if v > out[o * c + k] {
                out[o * c + k] = v;
                idx[o * c + k] = (i * c + k) as u32;
            }
        }
    });
    (out, idx)
}

/// Routes each output gradient to the input element that won its window.
fn max_pool2d_backward(dout: &[f32], idx: &[u32], g: &Conv2dGeom) -> Vec<f32> {
    let mut dx = alloc::take_filled(g.n * g.h * g.w * g.c, 0.0);
    for (&d, &i) in dout.iter().zip(idx) {
        dx[i as usize] += d;
    }
    dx
}

/// Average pooling; padded positions count as zeros (PyTorch's `count_include_pad=True`).
fn avg_pool2d(x: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let c = g.c;
    let scale = 1.0 / (g.kh * g.kw) as f32;
    let mut out = alloc::take_filled(g.n * g.oh() * g.ow() * c, 0.0);
    windows(g, |o, i| {
        for k in 0..c {
            out[o * c + k] += x[i * c + k] * scale;
        }
    });
    out
}

/// Spreads each output gradient evenly over its window.
fn avg_pool2d_backward(dout: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let c = g.c;
    let scale = 1.0 / (g.kh * g.kw) as f32;
    let mut dx = alloc::take_filled(g.n * g.h * g.w * c, 0.0);
    windows(g, |o, i| {
        for k in 0..c {
            dx[i * c + k] += dout[o * c + k] * scale;
        }
    });
    dx
}

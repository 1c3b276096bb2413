//! The CPU's max and average pooling on channels-last `[n, h, w, c]` data, with their backward passes.

use super::PoolKernels;
use crate::cpu::{Cpu, alloc, parallel, simd};
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

/// Max pooling; also returns, per output element, the flat index of the input element chosen. As in
/// PyTorch, the first maximum of a window (in `ky`, `kx` order) wins and a NaN wins over any number.
/// Images are shared among the threads; each output pixel's channels are compared as whole rows.
fn max_pool2d(x: &[f32], g: &Conv2dGeom) -> (Vec<f32>, Vec<u32>) {
    let per_img = g.oh() * g.ow() * g.c;
    let mut out = alloc::take(g.n * per_img);
    let mut idx = vec![0u32; g.n * per_img];
    let ranges = parallel::ranges(g.n, per_img * g.kh * g.kw);
    let parts =
        parallel::split(&mut out, &ranges, per_img).into_iter().zip(parallel::split(&mut idx, &ranges, per_img));
    parallel::each(&ranges, parts.collect(), |imgs, (out, idx)| max_pool_images(x, g, imgs, out, idx));
    (out, idx)
}

simd::vectorized! {
/// `max_pool2d` for images `imgs`, whose outputs and indices are `out` and `idx`; vectorised for the CPU
/// (with AVX-512 the compare-and-select loop runs sixteen channels at a time, which took the kernel from
/// 5% of a resnet18 step to under 1%).
fn max_pool_images(x: &[f32], g: &Conv2dGeom, imgs: std::ops::Range<usize>, out: &mut [f32], idx: &mut [u32]) {
    let (oh, ow, c) = (g.oh(), g.ow(), g.c);
    if c == 0 {
        return;
    }
    let mut pixels = out.chunks_exact_mut(c).zip(idx.chunks_exact_mut(c));
    let windows = imgs.flat_map(|n| (0..oh).flat_map(move |oy| (0..ow).map(move |ox| (n, oy, ox))));
    for (n, oy, ox) in windows {
        let Some((best, at)) = pixels.next() else { return };
        // The window is walked here rather than through `windows()`, whose per-element closure call would
        // keep the channel loop from vectorising.
        let rows = (0..g.kh).filter_map(|ky| (oy * g.stride + ky).checked_sub(g.pad).filter(|&iy| iy < g.h));
        let cols = || (0..g.kw).filter_map(|kx| (ox * g.stride + kx).checked_sub(g.pad).filter(|&ix| ix < g.w));
        let mut first = true;
        for iy in rows {
            for ix in cols() {
                let i = ((n * g.h + iy) * g.w + ix) * c;
                let src = &x[i..i + c];
                if first {
                    best.copy_from_slice(src);
                    at.iter_mut().zip(i as u32..).for_each(|(a, j)| *a = j);
                    first = false;
                    continue;
                }
                fold_max(best, at, src, i as u32);
            }
        }
        if first {
            // A window wholly in the padding, which `pool_geom` rules out (padding at most half the kernel):
            // -inf, routed to the image's own first pixel so that no other thread's image is touched.
            best.fill(f32::NEG_INFINITY);
            at.iter_mut().zip((n * g.h * g.w * c) as u32..).for_each(|(a, j)| *a = j);
        }
    }
}
}

/// Folds one window element's channels `src`, whose first flat index is `base`, into the running maxima
/// `best` and their indices `at`; selects rather than branches, so the loop vectorises.
#[inline(always)]
fn fold_max(best: &mut [f32], at: &mut [u32], src: &[f32], base: u32) {
    let c = best.len();
    let (at, src) = (&mut at[..c], &src[..c]);
    for k in 0..c {
        let (v, b) = (src[k], best[k]);
        let wins = (v > b) | v.is_nan();
        best[k] = if wins { v } else { b };
        at[k] = if wins { base + k as u32 } else { at[k] };
    }
}

/// Routes each output gradient to the input element that won its window; images are shared among the threads.
fn max_pool2d_backward(dout: &[f32], idx: &[u32], g: &Conv2dGeom) -> Vec<f32> {
    let (img_in, img_out) = (g.h * g.w * g.c, g.oh() * g.ow() * g.c);
    let mut dx = alloc::take(g.n * img_in);
    let ranges = parallel::ranges(g.n, img_in);
    let parts = parallel::split(&mut dx, &ranges, img_in);
    parallel::each(&ranges, parts, |imgs, dx| {
        dx.fill(0.0);
        let base = imgs.start * img_in;
        let (d, i) = (&dout[imgs.start * img_out..imgs.end * img_out], &idx[imgs.start * img_out..imgs.end * img_out]);
        for (&d, &i) in d.iter().zip(i) {
            if let Some(slot) = (i as usize).checked_sub(base).and_then(|j| dx.get_mut(j)) {
                *slot += d;
            }
        }
    });
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

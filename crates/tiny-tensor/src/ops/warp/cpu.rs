//! Perspective warps with bilinear sampling on channels-last `[n, h, w, c]` data, rows in parallel.

use super::{WarpKernels, WarpPad};
use crate::cpu::{Cpu, alloc, num_threads};
use crate::{Result, Storage, Tensor};

impl WarpKernels for Cpu {
    fn warp_perspective(&self, x: &Tensor, mats: &[[f32; 9]], pad: WarpPad, dims: [usize; 4]) -> Result<Storage> {
        let s = x.storage();
        let (off, len) = (x.layout().offset, x.layout().numel());
        Ok(Storage::Cpu(warp_perspective(&s.host()[off..off + len], mats, pad, dims)))
    }
}

/// How close (in pixels) a source point must be to a pixel centre to be taken as that centre.
const SNAP: f64 = 1e-6;

/// The normalised coordinate of pixel `k` along a side of `size` pixels (align_corners=True).
fn normalise(k: usize, size: usize) -> f64 {
    if size <= 1 { 0.0 } else { -1.0 + 2.0 * k as f64 / (size - 1) as f64 }
}

/// A normalised coordinate back in pixels, snapped to a pixel centre when within [`SNAP`] of one.
fn to_pixels(g: f64, size: usize) -> f64 {
    let p = (g + 1.0) * 0.5 * size.saturating_sub(1) as f64;
    let r = p.round();
    if (p - r).abs() <= SNAP { r } else { p }
}

/// `p` reflected about the centres of pixels 0 and `size - 1` until it lies between them (PyTorch's
/// `reflect_coordinates` for align_corners=True, then its clip).
fn reflect(p: f64, size: usize) -> f64 {
    if size <= 1 {
        return 0.0;
    }
    let span = (size - 1) as f64;
    let a = p.abs();
    let extra = a % span;
    let flips = (a / span).floor();
    let r = if flips % 2.0 == 0.0 { extra } else { span - extra };
    r.clamp(0.0, span)
}

/// The source pixels (flat `y * w + x` within the image) and bilinear weights that output pixel `(i, j)`
/// reads through matrix `m`: up to four, in PyTorch's order (north-west, north-east, south-west, south-east),
/// leaving out those outside the image and those of weight zero. None at all when the point is not finite.
fn taps(m: &[f32; 9], i: usize, j: usize, h: usize, w: usize, pad: WarpPad) -> ([(usize, f32); 4], usize) {
    let mut out = [(0usize, 0.0f32); 4];
    let m = m.map(f64::from);
    let (x, y) = (normalise(j, w), normalise(i, h));
    let s = m[6] * x + m[7] * y + m[8];
    if !s.is_finite() || s == 0.0 {
        return (out, 0);
    }
    let mut px = to_pixels((m[0] * x + m[1] * y + m[2]) / s, w);
    let mut py = to_pixels((m[3] * x + m[4] * y + m[5]) / s, h);
    if !px.is_finite() || !py.is_finite() {
        return (out, 0);
    }
    if pad == WarpPad::Reflection {
        (px, py) = (reflect(px, w), reflect(py, h));
    }
    let (x0, y0) = (px.floor(), py.floor());
    let (tx, ty) = (px - x0, py - y0);
    let corners = [
        (x0, y0, (1.0 - tx) * (1.0 - ty)),
        (x0 + 1.0, y0, tx * (1.0 - ty)),
        (x0, y0 + 1.0, (1.0 - tx) * ty),
        (x0 + 1.0, y0 + 1.0, tx * ty),
    ];
    let mut n = 0;
    for (cx, cy, wt) in corners {
        if wt != 0.0 && cx >= 0.0 && cx < w as f64 && cy >= 0.0 && cy < h as f64 {
            out[n] = (cy as usize * w + cx as usize, wt as f32);
            n += 1;
        }
    }
    (out, n)
}

/// Warps each image `b` of channels-last `x` (`[n, h, w, c]`, `dims` = `[n, c, h, w]`) through `mats[b]`;
/// the output is channels-last too.
fn warp_perspective(x: &[f32], mats: &[[f32; 9]], pad: WarpPad, [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let row = w * c;
    let mut out = alloc::take(n * h * row);
    if out.is_empty() {
        return out;
    }
    let rows = n * h;
    let per_task = rows.div_ceil(num_threads().max(1));
    let warp_rows = |first: usize, chunk: &mut [f32]| {
        for (r, orow) in chunk.chunks_mut(row).enumerate() {
            let (b, i) = ((first + r) / h, (first + r) % h);
            let img = &x[b * h * row..(b + 1) * h * row];
            for (j, o) in orow.chunks_mut(c).enumerate() {
                let (taps, k) = taps(&mats[b], i, j, h, w, pad);
                o.fill(0.0);
                for &(p, wt) in &taps[..k] {
                    for (o, &v) in o.iter_mut().zip(&img[p * c..(p + 1) * c]) {
                        *o += wt * v;
                    }
                }
            }
        }
    };
    if per_task >= rows {
        warp_rows(0, &mut out);
    } else {
        rayon::scope(|s| {
            for (t, chunk) in out.chunks_mut(per_task * row).enumerate() {
                let warp_rows = &warp_rows;
                s.spawn(move |_| warp_rows(t * per_task, chunk));
            }
        });
    }
    out
}

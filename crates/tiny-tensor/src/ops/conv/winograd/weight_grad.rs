//! The Winograd weight gradient: per tile `dU = (A dY A^T) . V`, summed as 16 GEMMs, then `G^T dU G`.
//!
//! The forward block is `Y = A^T [U . V] A` with `U = G g G^T` and `V = B^T d B`, so by the chain rule the
//! tile's share of `dL/dU` is `(A dY A^T) . V` and `dL/dg = G^T (dL/dU) G`. Summed over the tiles (and the
//! batch), position `xi` of `dL/dU` is one GEMM `W_xi^T [cout, tiles] @ V_xi [tiles, cin]`, with `W = A dY A^T`
//! the output gradient's transform: 16 multiply-adds per tile and channel pair where im2col needs 36. Output
//! pixels past the image's edge were dropped by the forward pass, so their gradient enters as zero.

use std::ops::Range;

use super::transforms::input_transform;
#[cfg(target_arch = "x86_64")]
use super::vector::Avx512;
use super::vector::{Vector, dispatch, store4};
use super::{CHUNK_FLOATS, Problem};
use crate::autocast::Precision;
use crate::cpu::{alloc, parallel};
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv::cpu::run_chunks;
use crate::ops::matmul::cpu::{Mat, MatMut, gemm};

/// The fewest tiles per chunk: each chunk adds its 16 GEMMs into the whole `[cout, cin]` result, which
/// must be read and written once per chunk, so a chunk needs enough tiles (the GEMMs' inner dimension)
/// to pay for that.
const MIN_TILES: usize = 256;

/// The weight gradient `[f, 3, 3, c]` of the convolution `g` (which must be `eligible`) from its input `x`
/// (`[n, h, w, c]`) and output gradient `dout` (`[n, h, w, f]`).
pub(in crate::ops::conv) fn backward_weight(x: &[f32], dout: &[f32], g: &Conv2dGeom, precision: Precision) -> Vec<f32> {
    let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.c, cout: g.f, precision };
    let (th, tw) = s.tiles();
    let by_size = CHUNK_FLOATS / (16 * tw * (s.cin + s.cout)).max(1);
    backward_weight_with(x, dout, &s, by_size.max(MIN_TILES.div_ceil(tw)).clamp(1, (s.n * th).max(1)))
}

/// `backward_weight` with `per_chunk` tile rows a chunk.
pub(super) fn backward_weight_with(x: &[f32], dout: &[f32], s: &Problem, per_chunk: usize) -> Vec<f32> {
    let (th, tw) = s.tiles();
    let units = s.n * th;
    let chunks = units.div_ceil(per_chunk);
    let len = 16 * s.cin * s.cout;
    // Each thread adds its chunks into its own `dU`, 16 matrices `[cout, cin]`, which its first chunk's GEMMs
    // overwrite instead of adding into zeros: zeroing a partial was a third of the memset in a resnet18 step.
    let partials = run_chunks(chunks, |range, threads| {
        let first = range.start;
        let mut du = if range.is_empty() { alloc::take_filled(len, 0.0) } else { alloc::take(len) };
        let mut v = alloc::take(16 * per_chunk * tw * s.cin);
        let mut wt = alloc::take(16 * per_chunk * tw * s.cout);
        for ch in range {
            let (u0, u1) = (ch * per_chunk, ((ch + 1) * per_chunk).min(units));
            let tiles = (u1 - u0) * tw;
            input_transform(x, s, u0, u1, &mut v[..16 * tiles * s.cin]);
            dout_transform(dout, s, u0, u1, &mut wt[..16 * tiles * s.cout]);
            for xi in 0..16 {
                let a = Mat { data: &wt, offset: xi * s.cout, rows: s.cout, cols: tiles, rs: 1, cs: 16 * s.cout };
                let b = Mat { data: &v, offset: xi * s.cin, rows: tiles, cols: s.cin, rs: 16 * s.cin, cs: 1 };
                let dst = MatMut { offset: xi * s.cin * s.cout, ..MatMut::rows(&mut du, s.cout, s.cin) };
                gemm(dst, ch != first, a, b, threads, s.precision);
            }
        }
        alloc::give(v);
        alloc::give(wt);
        du
    });
    let du = parallel::sum(partials).unwrap_or_else(|| alloc::take_filled(len, 0.0));
    // Output channels shared among the threads, each writing its own filters.
    let mut dw = alloc::take(9 * s.cin * s.cout);
    let ranges = parallel::ranges(s.cout, 16 * s.cin);
    let pieces = parallel::split(&mut dw, &ranges, 9 * s.cin);
    parallel::each(&ranges, pieces, |outs, dw| gradient_transform(&du, s.cin, s.cout, outs, dw));
    alloc::give(du);
    dw
}

/// `A` on a 2-vector: `(x0, x0 + x1, x0 - x1, -x1)`.
#[inline(always)]
fn am<V: Vector>(x: [V; 2]) -> [V; 4] {
    [x[0], x[0].add(x[1]), x[0].sub(x[1]), V::zero().sub(x[1])]
}

/// `G^T` on a 4-vector: `(x0 + (x1 + x2) / 2, (x1 - x2) / 2, (x1 + x2) / 2 + x3)`.
#[inline(always)]
fn gt<V: Vector>(x: [V; 4]) -> [V; 3] {
    let (sum, diff) = (x[1].add(x[2]).half(), x[1].sub(x[2]).half());
    [x[0].add(sum), diff, sum.add(x[3])]
}

dispatch! {
/// Writes `W = A dY A^T` of the 2x2 output-gradient blocks of tile rows `u0..u1` into `w`, tile by tile
/// (`[tiles, 16, cout]`, the layout of the input transform's `V`); pixels past the image's edge count as zero.
fn dout_transform<V>(dout: &[f32], s: &Problem, u0: usize, u1: usize, w: &mut [f32]) {
    let (th, tw) = s.tiles();
    let f = s.cout;
    assert!(dout.len() >= s.n * s.h * s.w * f && w.len() >= 16 * (u1 - u0) * tw * f && u1 <= s.n * th);
    for unit in u0..u1 {
        let (img, ty) = (unit / th, unit % th);
        let rows = 2.min(s.h - 2 * ty);
        for tx in 0..tw {
            let (t, cols) = ((unit - u0) * tw + tx, 2.min(s.w - 2 * tx));
            let pixel = |p: usize, q: usize| ((img * s.h + 2 * ty + p) * s.w + 2 * tx + q) * f;
            for c0 in (0..f).step_by(V::LANES) {
                let len = V::LANES.min(f - c0);
                // SAFETY: pixel `(2 ty + p, 2 tx + q)` is read only when inside the image (`p < rows`,
                // `q < cols`), at `c0..c0 + len` of its `f` channels; position `xi` writes
                // `w[(t * 16 + xi) * f + c0..][..len]`, inside the length asserted above.
                unsafe {
                    let mut d = [[V::zero(); 2]; 2];
                    for (p, row) in d.iter_mut().enumerate().take(rows) {
                        for (q, v) in row.iter_mut().enumerate().take(cols) {
                            *v = V::load(dout.as_ptr().add(pixel(p, q) + c0), len);
                        }
                    }
                    // Along each block row (x), then along the columns (y).
                    let e = [am(d[0]), am(d[1])];
                    for j in 0..4 {
                        store4(am([e[0][j], e[1][j]]), w.as_mut_ptr().add((t * 16 + j) * f + c0), 4 * f, len);
                    }
                }
            }
        }
    }
}
}

dispatch! {
/// Writes `dg = G^T dU G` for every output channel `o` in `outs` and input channel `i` of `du` (16 matrices
/// `[cout, cin]`) into `dw`, those filters of `[cout, 3, 3, cin]`.
fn gradient_transform<V>(du: &[f32], cin: usize, cout: usize, outs: Range<usize>, dw: &mut [f32]) {
    assert!(du.len() >= 16 * cin * cout && outs.end <= cout && dw.len() >= 9 * cin * outs.len());
    let plane = cin * cout;
    for o in outs.clone() {
        for c0 in (0..cin).step_by(V::LANES) {
            let len = V::LANES.min(cin - c0);
            // SAFETY: position `xi` is read at `du[xi * plane + o * cin + c0..][..len]` and tap `k` written at
            // `dw[((o - outs.start) * 9 + k) * cin + c0..][..len]`, inside the lengths asserted above.
            unsafe {
                let p = du.as_ptr().add(o * cin + c0);
                let m = |xi: usize| V::load(p.add(xi * plane), len);
                // Along x for each of the four rows, then along y.
                let r = [
                    gt([m(0), m(1), m(2), m(3)]),
                    gt([m(4), m(5), m(6), m(7)]),
                    gt([m(8), m(9), m(10), m(11)]),
                    gt([m(12), m(13), m(14), m(15)]),
                ];
                for kx in 0..3 {
                    let col = gt([r[0][kx], r[1][kx], r[2][kx], r[3][kx]]);
                    for (ky, v) in col.into_iter().enumerate() {
                        v.store(dw.as_mut_ptr().add(((o - outs.start) * 9 + ky * 3 + kx) * cin + c0), len);
                    }
                }
            }
        }
    }
}
}

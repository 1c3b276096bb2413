//! A direct 3x3 convolution over 3 channels (the RGB stem of simple_cnn) with AVX-512 intrinsics.
//!
//! With `kh * kw * c = 27`, im2col costs as much as the GEMM it feeds. Here each output pixel's 27-value
//! patch is gathered on the stack and multiplied straight into 16-channel vector accumulators: 4 pixels
//! at a time in the forward pass, and 27 accumulator registers (one per patch value) for the weight
//! gradient. The input gradient puts 16 output pixels in the vector lanes instead: 27 accumulators, one
//! per patch value, then each kernel row is summed on a short line and added onto the image; at stride 2
//! the line is assembled with vector adds and scatters. Used only when the CPU has AVX-512 (checked at
//! run time) and `f` is a multiple of 16.

use super::Conv2dGeom;
use crate::autocast::Precision;
use crate::cpu::{alloc, bf16};

/// The patch size this kernel is written for: a 3x3 window over 3 channels.
pub(super) const K: usize = 27;

/// Whether `g` is a 3x3, 3-channel convolution with a multiple of 16 filters on an AVX-512 CPU.
pub(crate) fn eligible(g: &Conv2dGeom) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        g.kh == 3 && g.kw == 3 && g.c == 3 && g.f.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// Gathers the `(ky, kx, c)` patch of output pixel `(n, oy, ox)`; zeros in the padding.
#[inline(always)]
pub(super) fn gather(x: &[f32], g: &Conv2dGeom, n: usize, oy: usize, ox: usize, patch: &mut [f32; K]) {
    let x0 = (ox * g.stride) as isize - g.pad as isize;
    let inside_x = x0 >= 0 && x0 as usize + 3 <= g.w;
    for ky in 0..3 {
        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
        let dst = &mut patch[ky * 9..ky * 9 + 9];
        if iy < 0 || iy as usize >= g.h {
            dst.fill(0.0);
            continue;
        }
        let row = (n * g.h + iy as usize) * g.w;
        if inside_x {
            let src = (row + x0 as usize) * 3;
            if let (Some(d), Some(s)) = (dst.first_chunk_mut::<9>(), x[src..].first_chunk::<9>()) {
                *d = *s;
            }
            continue;
        }
        for kx in 0..3 {
            let ix = x0 + kx as isize;
            let d = &mut dst[kx * 3..kx * 3 + 3];
            if ix < 0 || ix as usize >= g.w {
                d.fill(0.0);
            } else {
                let src = (row + ix as usize) * 3;
                d.copy_from_slice(&x[src..src + 3]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Conv2dGeom, K, gather};

    /// Forward for images `n0..n1` of `x` (`[n, h, w, 3]`) into their output rows `out` (`[rows, f]`);
    /// `wt` is `[27, f]`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward(
        x: &[f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        g: &Conv2dGeom,
        n0: usize,
        n1: usize,
        out: &mut [f32],
    ) {
        let (oh, ow, f) = (g.oh(), g.ow(), g.f);
        assert!(wt.len() >= K * f && out.len() >= (n1 - n0) * oh * ow * f);
        let mut patches = [[0.0f32; K]; 4];
        for n in n0..n1 {
            for oy in 0..oh {
                let mut ox = 0;
                while ox < ow {
                    let block = 4.min(ow - ox);
                    for p in 0..block {
                        gather(x, g, n, oy, ox + p, &mut patches[p]);
                    }
                    let row0 = ((n - n0) * oh + oy) * ow + ox;
                    for fb in (0..f).step_by(16) {
                        // SAFETY: `wt` holds 27 rows of `f` floats and `out` the chunk's rows (asserted
                        // above); `fb + 16 <= f`, so every unaligned 16-float load and store is in bounds.
                        unsafe {
                            let b = match bias {
                                Some(b) => _mm512_loadu_ps(b[fb..fb + 16].as_ptr()),
                                None => _mm512_setzero_ps(),
                            };
                            let mut acc = [b; 4];
                            for k in 0..K {
                                let w = _mm512_loadu_ps(wt.as_ptr().add(k * f + fb));
                                for p in 0..4 {
                                    acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(patches[p][k]), w, acc[p]);
                                }
                            }
                            for (p, a) in acc.iter().enumerate().take(block) {
                                let v = if relu { _mm512_max_ps(*a, _mm512_setzero_ps()) } else { *a };
                                _mm512_storeu_ps(out.as_mut_ptr().add((row0 + p) * f + fb), v);
                            }
                        }
                    }
                    ox += block;
                }
            }
        }
    }

    /// Adds the input gradient of images `n0..n1` into `dx` (`[n1 - n0, h, w, 3]`), from `dout`
    /// (`[n, oh, ow, f]`) and `w` (`[f, 3, 3, 3]` in `(ky, kx, c)` order).
    #[target_feature(enable = "avx512f")]
    pub(super) fn input_grad(dout: &[f32], w: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dx: &mut [f32]) {
        let (oh, ow, f) = (g.oh(), g.ow(), g.f);
        assert!(w.len() >= f * K && dout.len() >= n1 * oh * ow * f && dx.len() >= (n1 - n0) * g.h * g.w * 3);
        // Lane p reads pixel p's value of one filter: offsets p * f.
        let offsets = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(f as i32),
        );
        let mut tile = [[0.0f32; 16]; K];
        for n in n0..n1 {
            for oy in 0..oh {
                for ox0 in (0..ow).step_by(16) {
                    let lanes = 16.min(ow - ox0);
                    let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                    let base = ((n * oh + oy) * ow + ox0) * f;
                    // SAFETY: lane p < lanes reads dout[base + p * f + fi], inside the pixels of this row
                    // (asserted above); masked-off lanes read nothing. `w` holds f rows of 27 floats.
                    unsafe {
                        let mut acc = [_mm512_setzero_ps(); K];
                        // The next filter's gather is issued before this one's FMAs, to hide its latency.
                        let gather = |fi: usize| {
                            let src = dout.as_ptr().add(base + fi);
                            _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, offsets, src)
                        };
                        let mut col = gather(0);
                        for fi in 0..f {
                            let next = if fi + 1 < f { gather(fi + 1) } else { col };
                            for k in 0..K {
                                acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(*w.get_unchecked(fi * K + k)), col, acc[k]);
                            }
                            col = next;
                        }
                        for k in 0..K {
                            _mm512_storeu_ps(tile[k].as_mut_ptr(), acc[k]);
                        }
                    }
                    // tile[(ky, kx, c)][p] belongs at dx[n, oy*s + ky - pad, (ox0 + p)*s + kx - pad, c].
                    for ky in 0..3 {
                        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let row = &mut dx[((n - n0) * g.h + iy as usize) * g.w * 3..][..g.w * 3];
                        add_window_row(row, &tile, ky, ox0, lanes, g);
                    }
                }
            }
        }
    }

    /// Adds kernel row `ky` of the 16 pixels' patch gradients (`tile[(ky, kx, c)][p]`, pixels from output
    /// column `ox0`) onto one image row. The windows overlap when the stride is below 3, so they are first
    /// summed into a small line on the stack, free of bounds checks, and the line is added to the row in one
    /// contiguous pass clipped to the image.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add_window_row(row: &mut [f32], tile: &[[f32; 16]; K], ky: usize, ox0: usize, lanes: usize, g: &Conv2dGeom) {
        const MAX_STRIDE: usize = 4;
        const LINE: usize = (15 * MAX_STRIDE + 3) * 3;
        let s = g.stride;
        if s > MAX_STRIDE {
            for kx in 0..3 {
                for p in 0..lanes {
                    let ix = ((ox0 + p) * s + kx) as isize - g.pad as isize;
                    if ix >= 0 && (ix as usize) < g.w {
                        for c in 0..3 {
                            row[ix as usize * 3 + c] += tile[(ky * 3 + kx) * 3 + c][p];
                        }
                    }
                }
            }
            return;
        }
        let mut line = [0.0f32; LINE];
        if s == 2 {
            line_stride2(&mut line, tile, ky, lanes);
        } else {
            for kx in 0..3 {
                for c in 0..3 {
                    let t = &tile[(ky * 3 + kx) * 3 + c];
                    for p in 0..lanes {
                        line[(p * s + kx) * 3 + c] += t[p];
                    }
                }
            }
        }
        // Line column j is image column x0 + j.
        let cols = (lanes - 1) * s + 3;
        let x0 = (ox0 * s) as isize - g.pad as isize;
        let j_lo = (-x0).clamp(0, cols as isize) as usize;
        let j_hi = (g.w as isize - x0).clamp(j_lo as isize, cols as isize) as usize;
        let start = (x0 + j_lo as isize) as usize * 3;
        let dst = &mut row[start..start + (j_hi - j_lo) * 3];
        dst.iter_mut().zip(&line[j_lo * 3..j_hi * 3]).for_each(|(d, v)| *d += v);
    }

    /// Fills the first `(16 * 2 + 1) * 3` floats of `line` for stride 2, where pixel `p`'s window covers line
    /// columns `2p..2p + 3`: column `2p` sums `kx = 0` of pixel `p` and `kx = 2` of pixel `p - 1`, column
    /// `2p + 1` is `kx = 1` of pixel `p` alone. So each column is one vector sum, and 16 pixels' values go
    /// into place with one scatter per (column parity, channel) instead of a scalar add per value. Columns
    /// past the `lanes` valid pixels' windows are written too, and the caller clips them off; `kx = 0` of the
    /// first invalid pixel lands inside, so it is masked to zero (it is `0 * w`, a NaN for an infinite weight).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn line_stride2(line: &mut [f32], tile: &[[f32; 16]; K], ky: usize, lanes: usize) {
        assert!(line.len() >= 16 * 6 + 3);
        let valid: __mmask16 = if lanes >= 16 { 0xffff } else { (1u16 << lanes) - 1 };
        // SAFETY: lane p writes line[6p + 5] at most, below 99 (asserted above); tile rows are 16 floats.
        unsafe {
            let six = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(6),
            );
            for c in 0..3 {
                let row = |kx: usize| _mm512_loadu_ps(tile[(ky * 3 + kx) * 3 + c].as_ptr());
                let last = row(2);
                // Lane p of `prev` holds kx = 2 of pixel p - 1; lane 0 holds zero.
                let prev =
                    _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(_mm512_castps_si512(last), _mm512_setzero_si512()));
                let first = _mm512_maskz_mov_ps(valid, row(0));
                _mm512_i32scatter_ps::<4>(line.as_mut_ptr().add(c), six, _mm512_add_ps(first, prev));
                _mm512_i32scatter_ps::<4>(line.as_mut_ptr().add(3 + c), six, row(1));
                line[96 + c] = tile[(ky * 3 + 2) * 3 + c][15];
            }
        }
    }

    /// Adds the weight gradient (`[27, f]`) of images `n0..n1` into `dw`, from `dout` (`[n, oh, ow, f]`).
    #[target_feature(enable = "avx512f")]
    pub(super) fn weight_grad(x: &[f32], dout: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dw: &mut [f32]) {
        let (oh, ow, f) = (g.oh(), g.ow(), g.f);
        assert!(dw.len() >= K * f && dout.len() >= n1 * oh * ow * f);
        let mut patch = [0.0f32; K];
        for fb in (0..f).step_by(16) {
            // SAFETY: `dout` holds every pixel's `f` floats and `dw` 27 rows of `f` (asserted above);
            // `fb + 16 <= f`, so every unaligned 16-float load and store is in bounds.
            unsafe {
                let mut acc = [_mm512_setzero_ps(); K];
                for n in n0..n1 {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            gather(x, g, n, oy, ox, &mut patch);
                            let d = _mm512_loadu_ps(dout.as_ptr().add(((n * oh + oy) * ow + ox) * f + fb));
                            for k in 0..K {
                                acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(patch[k]), d, acc[k]);
                            }
                        }
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    let dst = dw.as_mut_ptr().add(k * f + fb);
                    _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), *a));
                }
            }
        }
    }
}

/// The forward of images `n0..n1`; only call when `eligible(g)`.
pub(crate) fn forward(
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Conv2dGeom,
    n0: usize,
    n1: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `eligible` checked at run time that the CPU supports AVX-512F.
    unsafe {
        avx512::forward(x, wt, bias, relu, g, n0, n1, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, wt, bias, relu, g, n0, n1, out);
}

/// The input gradient of images `n0..n1` added into `dx` (those images, `[h, w, 3]` each); only call when
/// `eligible(g)`.
pub(crate) fn input_grad(dout: &[f32], w: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `eligible` checked at run time that the CPU supports AVX-512F.
    unsafe {
        avx512::input_grad(dout, w, g, n0, n1, dx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dout, w, g, n0, n1, dx);
}

/// The weight gradient of images `n0..n1` added into `dw` (`[27, f]`); only call when `eligible(g)`.
pub(crate) fn weight_grad(x: &[f32], dout: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `eligible` checked at run time that the CPU supports AVX-512F.
    unsafe {
        avx512::weight_grad(x, dout, g, n0, n1, dw)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, dout, g, n0, n1, dw);
}

/// An operand of a direct kernel: borrowed as it is, or, for a bf16 product, a copy rounded to bf16.
pub(super) enum Operand<'a> {
    Borrowed(&'a [f32]),
    Rounded(Vec<f32>),
}

impl<'a> Operand<'a> {
    /// `data` as a kernel in `precision` reads it.
    pub(super) fn new(data: &'a [f32], precision: Precision) -> Self {
        match precision {
            Precision::Fp32 => Operand::Borrowed(data),
            Precision::Bf16 => Operand::Rounded(bf16::rounded(data)),
        }
    }
}

impl std::ops::Deref for Operand<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Operand::Borrowed(d) => d,
            Operand::Rounded(v) => v,
        }
    }
}

impl Drop for Operand<'_> {
    fn drop(&mut self) {
        if let Operand::Rounded(v) = self {
            alloc::give(std::mem::take(v));
        }
    }
}

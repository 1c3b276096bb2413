//! The RGB stem's direct kernels (`cpu_rgb.rs`) in bf16, on AVX512-BF16: `vdpbf16ps` over pairs of patch values.
//!
//! The forward pairs each pixel's 27 patch values along `(ky, kx, c)`, 14 pairs against the weights packed the same
//! way: 14 `vdpbf16ps` a pixel where the f32 kernel does 27 FMAs. The weight gradient pairs two pixels: for each of
//! the 27 patch positions one `vdpbf16ps` adds both pixels' products, patch value times output gradient, where the
//! f32 kernel does two FMAs. The operands are rounded as they are gathered (`vcvtne2ps2bf16`), so there is no
//! rounded copy of the image or the gradient. The sums are f32, in their own order: these kernels give bf16's
//! numbers, not the bits of the f32 kernel on rounded operands (which CPUs without AVX512-BF16 run).

use super::Conv2dGeom;
use super::cpu_rgb::{K, gather};

/// Whether this CPU runs the stem's bf16 kernels (it has AVX512-BF16).
pub(crate) fn available() -> bool {
    crate::cpu::bf16::bf16_kernel().has_avx512_bf16()
}

/// The weights `w` (`[f, 27]`) as 14 rows of `f` pairs, pair `(i, f)` holding positions `2i` and `2i + 1`.
pub(crate) fn pack_weights(w: &[f32], f: usize) -> Vec<u32> {
    use crate::cpu::bf16::{pair, round};
    let mut out = vec![0u32; K.div_ceil(2) * f];
    for fi in 0..f {
        for i in 0..K.div_ceil(2) {
            let hi = if 2 * i + 1 < K { round(w[fi * K + 2 * i + 1]) } else { 0 };
            out[i * f + fi] = pair(round(w[fi * K + 2 * i]), hi);
        }
    }
    out
}

/// The forward of images `n0..n1` of `x` (`[n, h, w, 3]`) into their output rows `out` (`[rows, f]`), from the
/// packed weights `wp` (`pack_weights`); only call when `available()` and `cpu_rgb::eligible(g)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    x: &[f32],
    wp: &[u32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Conv2dGeom,
    n0: usize,
    n1: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked `available()`: the CPU has AVX512-F, -BW and -BF16.
    unsafe {
        avx512::forward(x, wp, bias, relu, g, n0, n1, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, wp, bias, relu, g, n0, n1, out);
}

/// The output gradient of a stem, and what to do with it as it is read.
pub(crate) struct Grad<'a> {
    /// `[n, oh, ow, f]`.
    pub dout: &'a [f32],
    /// The ReLU's output, also `[n, oh, ow, f]`, when the gradient is to be masked where it is not positive.
    pub relu_out: Option<&'a [f32]>,
}

/// The weight gradient of images `n0..n1` added into `dw` (`[27, f]`), from `x` and the (masked) output gradient,
/// whose f32 sum over the pixels is added into `db` (`[f]`) when given; only call when `available()` and
/// `cpu_rgb::eligible(g)`.
pub(crate) fn weight_grad(
    x: &[f32],
    d: &Grad<'_>,
    g: &Conv2dGeom,
    (n0, n1): (usize, usize),
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked `available()`: the CPU has AVX512-F, -BW and -BF16.
    unsafe {
        avx512::weight_grad(x, d, g, (n0, n1), dw, db)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, d, g, n0, n1, dw, db);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Conv2dGeom, Grad, K, gather};
    use crate::ops::matmul::bf16::INTERLEAVE;

    /// Pairs in a patch: 27 values and a zero.
    const PAIRS: usize = K.div_ceil(2);

    /// The patch of output pixel `(n, oy, ox)` as bf16 pairs along `(ky, kx, c)`, the last pair's upper half zero.
    #[inline(always)]
    unsafe fn patch_pairs(x: &[f32], g: &Conv2dGeom, (n, oy, ox): (usize, usize, usize), out: &mut [u32; 16]) {
        let mut patch = [0.0f32; 32];
        gather(x, g, n, oy, ox, (&mut patch[..K]).try_into().unwrap_or_else(|_| unreachable!()));
        // SAFETY: `patch` holds 32 floats and `out` 16 words; the transmute is between 64-byte vectors.
        unsafe {
            let lo = _mm512_loadu_ps(patch.as_ptr());
            let hi = _mm512_loadu_ps(patch.as_ptr().add(16));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.as_mut_ptr().cast(), bf);
        }
    }

    /// See [`super::forward`]: 4 pixels at a time, 16 filters a vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward(
        x: &[f32],
        wp: &[u32],
        bias: Option<&[f32]>,
        relu: bool,
        g: &Conv2dGeom,
        n0: usize,
        n1: usize,
        out: &mut [f32],
    ) {
        let (oh, ow, f) = (g.oh(), g.ow(), g.f);
        assert!(wp.len() >= PAIRS * f && out.len() >= (n1 - n0) * oh * ow * f && f.is_multiple_of(16));
        let mut pairs = [[0u32; 16]; 4];
        for n in n0..n1 {
            for oy in 0..oh {
                let mut ox = 0;
                while ox < ow {
                    let block = 4.min(ow - ox);
                    for (p, pp) in pairs.iter_mut().enumerate().take(block) {
                        // SAFETY: the caller's CPU has AVX512-BF16.
                        unsafe { patch_pairs(x, g, (n, oy, ox + p), pp) };
                    }
                    let row0 = ((n - n0) * oh + oy) * ow + ox;
                    for fb in (0..f).step_by(16) {
                        // SAFETY: `wp` holds 14 rows of `f` pairs and `out` the chunk's rows (asserted above);
                        // `fb + 16 <= f`, so every 16-lane load and store is in bounds.
                        unsafe {
                            let b = match bias {
                                Some(b) => _mm512_loadu_ps(b[fb..fb + 16].as_ptr()),
                                None => _mm512_setzero_ps(),
                            };
                            let mut acc = [b; 4];
                            for i in 0..PAIRS {
                                let w: __m512bh =
                                    std::mem::transmute(_mm512_loadu_si512(wp.as_ptr().add(i * f + fb).cast()));
                                for p in 0..4 {
                                    let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(pairs[p][i] as i32));
                                    acc[p] = _mm512_dpbf16_ps(acc[p], a, w);
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

    /// See [`super::weight_grad`]: two pixels a pair, 27 accumulators of 16 filters (and one for the bias).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn weight_grad(
        x: &[f32],
        d: &Grad<'_>,
        g: &Conv2dGeom,
        (n0, n1): (usize, usize),
        dw: &mut [f32],
        mut db: Option<&mut [f32]>,
    ) {
        let (oh, ow, f) = (g.oh(), g.ow(), g.f);
        let dout = d.dout;
        assert!(dw.len() >= K * f && dout.len() >= n1 * oh * ow * f && f.is_multiple_of(16));
        assert!(d.relu_out.is_none_or(|o| o.len() >= dout.len()) && db.as_ref().is_none_or(|b| b.len() >= f));
        // Pixel `i`'s 16 gradients from filter `fb`, masked by the ReLU's output when there is one.
        let grad = |i: usize, fb: usize| {
            let at = (n0 * oh * ow + i) * f + fb;
            // SAFETY: pixel `i` of the chunk and `fb + 16 <= f` lie inside `dout` (and the ReLU's output).
            unsafe {
                let v = _mm512_loadu_ps(dout.as_ptr().add(at));
                match d.relu_out {
                    Some(o) => {
                        let positive =
                            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_loadu_ps(o.as_ptr().add(at)), _mm512_setzero_ps());
                        _mm512_maskz_mov_ps(positive, v)
                    }
                    None => v,
                }
            }
        };
        let pixels = (n1 - n0) * oh * ow;
        // Pixel `i` of the chunk, in its images' row-major order.
        let at = |i: usize| (n0 + i / (oh * ow), i / ow % oh, i % ow);
        let (mut p0, mut p1) = ([0u32; 16], [0u32; 16]);
        // SAFETY: `dout` holds every pixel's `f` floats and `dw` 27 rows of `f` (asserted above); `fb + 16 <= f`.
        unsafe {
            let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
            for fb in (0..f).step_by(16) {
                let mut acc = [_mm512_setzero_ps(); K];
                let mut bias = _mm512_setzero_ps();
                for i in (0..pixels).step_by(2) {
                    let second = i + 1 < pixels;
                    patch_pairs(x, g, at(i), &mut p0);
                    let d0 = grad(i, fb);
                    let d1 = if second {
                        patch_pairs(x, g, at(i + 1), &mut p1);
                        grad(i + 1, fb)
                    } else {
                        p1 = [0; 16];
                        _mm512_setzero_ps()
                    };
                    if db.is_some() {
                        bias = _mm512_add_ps(_mm512_add_ps(bias, d0), d1);
                    }
                    // (d0[f], d1[f]) pairs, and (patch0[k], patch1[k]) pairs for k = 0..32.
                    let d: __m512bh = std::mem::transmute(_mm512_permutexvar_epi16(
                        idx,
                        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(d1, d0)),
                    ));
                    let (a0, a1) = (_mm512_loadu_si512(p0.as_ptr().cast()), _mm512_loadu_si512(p1.as_ptr().cast()));
                    let mut k_pairs = [0u32; 32];
                    // Halves k of the two patches: p0's pair words hold (k, k+1), so split them into halves first.
                    let lo = _mm512_unpacklo_epi16(a0, a1);
                    let hi = _mm512_unpackhi_epi16(a0, a1);
                    spread(lo, hi, &mut k_pairs);
                    for k in 0..K {
                        let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(k_pairs[k] as i32));
                        acc[k] = _mm512_dpbf16_ps(acc[k], a, d);
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    let dst = dw.as_mut_ptr().add(k * f + fb);
                    _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), *a));
                }
                if let Some(db) = db.as_deref_mut() {
                    let dst = db.as_mut_ptr().add(fb);
                    _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), bias));
                }
            }
        }
    }

    /// From `unpacklo/hi_epi16(p0, p1)` of two patches' halves (each 128-bit lane of `lo` holds halves 0-3 of that
    /// lane's eight, `hi` halves 4-7, each interleaved p0, p1), the pairs `(p0[k], p1[k])` in k order.
    #[inline(always)]
    unsafe fn spread(lo: __m512i, hi: __m512i, out: &mut [u32; 32]) {
        // SAFETY: `out` holds 32 words, written as two 16-word vectors.
        unsafe {
            // Lane l of lo holds k = 8l..8l+4, of hi k = 8l+4..8l+8: put each lane's four pairs in k order.
            let first = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi);
            let second = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), hi);
            _mm512_storeu_si512(out.as_mut_ptr().cast(), first);
            _mm512_storeu_si512(out.as_mut_ptr().add(16).cast(), second);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cpu::bf16::round_f32;

    /// Each output is the f32 sum of exact products of rounded operands: within its number of roundings of the
    /// sum of the products' magnitudes (computed here in f64).
    #[test]
    fn the_stems_bf16_kernels_sum_exact_products_of_rounded_operands() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for g in [
            Conv2dGeom { n: 3, c: 3, h: 9, w: 11, f: 32, kh: 3, kw: 3, stride: 2, pad: 1 },
            Conv2dGeom { n: 2, c: 3, h: 6, w: 5, f: 16, kh: 3, kw: 3, stride: 1, pad: 1 },
        ] {
            let (oh, ow) = (g.oh(), g.ow());
            let x: Vec<f32> = (0..g.n * g.h * g.w * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..g.f * K).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dout: Vec<f32> = (0..g.n * oh * ow * g.f).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out = vec![0.0; g.n * oh * ow * g.f];
            forward(&x, &pack_weights(&w, g.f), None, false, &g, 0, g.n, &mut out);
            let mut dw = vec![0.0; K * g.f];
            weight_grad(&x, &Grad { dout: &dout, relu_out: None }, &g, (0, g.n), &mut dw, None);
            // The exact sums of rounded products: out[pixel, f] and dw[k, f], with the sums of magnitudes.
            let (mut want_out, mut mag_out) = (vec![0f64; out.len()], vec![0f64; out.len()]);
            let (mut want_dw, mut mag_dw) = (vec![0f64; dw.len()], vec![0f64; dw.len()]);
            let mut patch = [0.0f32; K];
            for n in 0..g.n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        gather(&x, &g, n, oy, ox, &mut patch);
                        let pixel = (n * oh + oy) * ow + ox;
                        for f in 0..g.f {
                            for k in 0..K {
                                let a = f64::from(round_f32(patch[k]));
                                let p = a * f64::from(round_f32(w[f * K + k]));
                                want_out[pixel * g.f + f] += p;
                                mag_out[pixel * g.f + f] += p.abs();
                                let q = a * f64::from(round_f32(dout[pixel * g.f + f]));
                                want_dw[k * g.f + f] += q;
                                mag_dw[k * g.f + f] += q.abs();
                            }
                        }
                    }
                }
            }
            let rounds = |terms: usize| terms as f64 * 2f64.powi(-24);
            for (i, (&got, &want)) in out.iter().zip(&want_out).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= rounds(K) * mag_out[i] + 1e-30,
                    "{g:?} out {i}: {got} vs {want}"
                );
            }
            let pixels = g.n * oh * ow;
            for (i, (&got, &want)) in dw.iter().zip(&want_dw).enumerate() {
                assert!((f64::from(got) - want).abs() <= rounds(pixels) * mag_dw[i], "{g:?} dw {i}: {got} vs {want}");
            }
        }
    }
}

//! Packing for the bf16 GEMM: f32 operands rounded to bf16 and laid out as the kernels read them.
//!
//! The unit is a pair: two bf16 of consecutive k (`cpu::bf16::pair`). A block is `lanes` rows of A or columns
//! of B by `kc` values of k, cut into panels of `width` lanes (the last one padded with zeros, as is the odd
//! k past `kc`). Panel `p` starts at `out[p * width * kc2]` and is laid out one of two ways:
//! - panel-major, `[kp][l]`: what B always is, and A when its rows are not contiguous in k;
//! - row-major, `[l][kp]`: A when its rows are contiguous in k (an im2col matrix), each row one straight
//!   conversion.
//!
//! With AVX512-BF16 the common strides are converted 32 floats at a time (`vcvtne2ps2bf16`, which rounds as
//! `cpu::bf16::round` does), a whole block per call; on a CPU with AVX2 but no bf16 instructions the two
//! commonest are converted 8 or 16 at a time by `round` written in vector instructions; the rest go through the
//! scalar loop, which gives the same pairs. Makers of bf16 operands use two helpers: `halves` rounds a run of
//! floats (with AVX512-BF16, else AVX2, else one by one), and `interleave` pairs two runs of halves (SSE2).

use crate::cpu::bf16::{pair, round};

/// A block of an f32 operand: value `(lane, k)` at `data[offset + lane * lane_stride + k * k_stride]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub lane_stride: usize,
    pub k_stride: usize,
}

impl Source<'_> {
    /// The pair of k-values `2 * kp` and `2 * kp + 1` of `lane`, a zero past `kc`.
    #[inline(always)]
    fn pair_at(&self, lane: usize, kp: usize, kc: usize) -> u32 {
        let at = |k: usize| self.data[self.offset + lane * self.lane_stride + k * self.k_stride];
        pair(round(at(2 * kp)), if 2 * kp + 1 < kc { round(at(2 * kp + 1)) } else { 0 })
    }

    /// Whether every element of the block (`lanes x kc`) lies inside `data`.
    fn fits(&self, lanes: usize, kc: usize) -> bool {
        lanes == 0
            || kc == 0
            || self.offset + (lanes - 1) * self.lane_stride + (kc - 1) * self.k_stride < self.data.len()
    }
}

/// Converts `src` into bf16 values at the start of `out`, one 16-bit half each: one run of a row of pairs, for
/// makers of [`Lhs::Rows`](super::Lhs::Rows), whose rows are halves in k order two to a pair.
pub(crate) fn halves(src: &[f32], out: &mut [u16], vector: bool) {
    assert!(out.len() >= src.len());
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` means the CPU has AVX512-BF16; the run and its halves fit `src` and `out`.
        unsafe { avx512::convert_halves(src, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; `out` holds the run's halves (asserted above).
        unsafe { avx2::convert_halves(src, out) };
        return;
    }
    let _ = vector;
    out.iter_mut().zip(src).for_each(|(h, &v)| *h = round(v));
}

/// Pairs from two runs of halves: `out[i] = pair(lo[i], hi[i])`, with zero odd halves where `hi` is `None`; 8 at
/// a time by SSE2's interleave of 16-bit lanes (every x86-64 CPU has it), which is exactly `pair`.
#[inline]
pub(super) fn interleave(lo: &[u16], hi: Option<&[u16]>, out: &mut [u32]) {
    let len = lo.len();
    let (out, hi) = (&mut out[..len], hi.map(|h| &h[..len]));
    #[cfg(target_arch = "x86_64")]
    let done = {
        use std::arch::x86_64::*;
        let whole = len / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: 8 halves of `lo` and `hi` are read and 8 words of `out` written, all below `len` (their
            // lengths, checked by the slicing above); SSE2 is part of x86-64.
            unsafe {
                let l = _mm_loadu_si128(lo.as_ptr().add(i).cast());
                let h = hi.map_or(_mm_setzero_si128(), |h| _mm_loadu_si128(h.as_ptr().add(i).cast()));
                _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm_unpacklo_epi16(l, h));
                _mm_storeu_si128(out.as_mut_ptr().add(i + 4).cast(), _mm_unpackhi_epi16(l, h));
            }
        }
        whole
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for i in done..len {
        out[i] = pair(lo[i], hi.map_or(0, |h| h[i]));
    }
}

/// The 16-bit halves of `pairs`, low half first (the order of k within a pair on a little-endian machine).
#[cfg(target_endian = "little")]
pub(crate) fn as_halves(pairs: &mut [u32]) -> &mut [u16] {
    // SAFETY: a u32 is two u16 with no padding and every bit pattern valid, u16's alignment divides u32's, and
    // the new slice covers exactly the old one's bytes for the same borrow.
    unsafe { std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2) }
}

/// The `vpermw` indices that take lane `j` of two vectors' bf16 (`[a0..a15, b0..b15]`, as `vcvtne2ps2bf16` leaves
/// them) to pair `j`: `[a0, b0, a1, b1, ...]`.
pub(crate) const INTERLEAVE: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut j = 0;
    while j < 16 {
        idx[2 * j] = j as u16;
        idx[2 * j + 1] = 16 + j as u16;
        j += 1;
    }
    idx
};

/// How a block's panels are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `[kp][l]` within each panel.
    PanelMajor,
    /// `[l][kp]` within each panel.
    RowMajor,
}

/// Packs `lanes` lanes by `kc` k-values of `src` into panels of `width` lanes, `layout` within each, into `out`
/// (`lanes.div_ceil(width) * width * kc.div_ceil(2)` pairs); with the AVX512-BF16 conversions when `vector`.
pub(super) fn block(
    src: Source<'_>,
    lanes: usize,
    width: usize,
    kc: usize,
    layout: Layout,
    out: &mut [u32],
    vector: bool,
) {
    let kc2 = kc.div_ceil(2);
    let padded = lanes.div_ceil(width) * width;
    assert!(width > 0 && out.len() >= padded * kc2 && src.fits(lanes, kc));
    #[cfg(target_arch = "x86_64")]
    if vector && kc > 0 {
        // SAFETY: `vector` means the CPU has AVX512-BF16; the assert above bounds every read and write.
        unsafe {
            match layout {
                Layout::RowMajor if src.k_stride == 1 => return avx512::row_major(src, lanes, padded, kc, out),
                Layout::RowMajor if src.lane_stride == 1 && padded.is_multiple_of(16) => {
                    return avx512::row_major_lane_runs(src, lanes, padded, kc, out);
                }
                Layout::PanelMajor if src.lane_stride == 1 => {
                    return avx512::panel_major(src, lanes, width, padded, kc, out);
                }
                Layout::PanelMajor if src.k_stride == 1 => {
                    return avx512::panel_major_k_runs(src, lanes, width, padded, kc, out);
                }
                _ => {}
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if !vector && kc > 0 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the assert above bounds every read and write.
        unsafe {
            match layout {
                Layout::RowMajor if src.k_stride == 1 => return avx2::row_major(src, lanes, width, padded, kc, out),
                Layout::PanelMajor if src.lane_stride == 1 => {
                    return avx2::panel_major(src, lanes, width, padded, kc, out);
                }
                _ => {}
            }
        }
    }
    let _ = vector;
    for l in 0..padded {
        let (panel, i) = (l / width, l % width);
        for kp in 0..kc2 {
            let at = panel * width * kc2
                + match layout {
                    Layout::PanelMajor => kp * width + i,
                    Layout::RowMajor => i * kc2 + kp,
                };
            out[at] = if l < lanes { src.pair_at(l, kp, kc) } else { 0 };
        }
    }
}

/// The two commonest strides packed 8 or 16 floats at a time on a CPU with AVX2 but no bf16 instructions, with
/// [`round`]'s rounding written in vector instructions: the same pairs as the scalar loop.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Source;

    /// [`round`](super::round) of 8 floats, each bf16 in the low half of its lane.
    #[inline(always)]
    unsafe fn round8(x: __m256) -> __m256i {
        // SAFETY: register operations only; the caller's function enables AVX2.
        unsafe {
            let bits = _mm256_castps_si256(x);
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            let tiny =
                _mm256_cmpeq_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7f80_0000)), _mm256_setzero_si256());
            let flushed = _mm256_andnot_si256(_mm256_and_si256(tiny, _mm256_set1_epi32(0x7fff_ffff)), bits);
            let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(flushed), _mm256_set1_epi32(1));
            let bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd);
            let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(flushed, bias));
            let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
            _mm256_blendv_epi8(rounded, quiet, nan)
        }
    }

    /// The mask of the first `n` (at most 8) lanes.
    #[inline(always)]
    unsafe fn first(n: usize) -> __m256i {
        // SAFETY: register operations only.
        unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
    }

    /// [`super::halves`] with AVX2, 16 floats at a time and the rest one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2, and `out` hold `src.len()` halves.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn convert_halves(src: &[f32], out: &mut [u16]) {
        assert!(out.len() >= src.len());
        let whole = src.len() / 16 * 16;
        for (x, h) in src[..whole].chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            // SAFETY: 16 floats are read and 16 halves written, inside the chunks.
            unsafe {
                let lo = round8(_mm256_loadu_ps(x.as_ptr()));
                let hi = round8(_mm256_loadu_ps(x.as_ptr().add(8)));
                let halves = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi));
                _mm256_storeu_si256(h.as_mut_ptr().cast(), halves);
            }
        }
        out[whole..src.len()].iter_mut().zip(&src[whole..]).for_each(|(h, &v)| *h = super::round(v));
    }

    /// Row-major panels from lanes contiguous in k: each lane's run converted 16 floats at a time into 8 pairs.
    ///
    /// # Safety
    /// The CPU must have AVX2; `src.k_stride` is 1 and the block fits (`block`'s assert).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row_major(
        src: Source<'_>,
        lanes: usize,
        width: usize,
        padded: usize,
        kc: usize,
        out: &mut [u32],
    ) {
        let kc2 = kc.div_ceil(2);
        for l in 0..padded {
            let at = (l / width) * width * kc2 + (l % width) * kc2;
            let dst = &mut out[at..at + kc2];
            if l >= lanes {
                dst.fill(0);
                continue;
            }
            let row = &src.data[src.offset + l * src.lane_stride..][..kc];
            for (x, pairs) in row.chunks_exact(16).zip(dst.chunks_exact_mut(8)) {
                // SAFETY: 16 floats are read and 8 pairs written, inside the chunks.
                unsafe {
                    let lo = round8(_mm256_loadu_ps(x.as_ptr()));
                    let hi = round8(_mm256_loadu_ps(x.as_ptr().add(8)));
                    // k 0-3, 8-11, 4-7, 12-15 as 16-bit halves, then in k order.
                    let halves = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi));
                    _mm256_storeu_si256(pairs.as_mut_ptr().cast(), halves);
                }
            }
            for kp in kc / 16 * 8..kc2 {
                dst[kp] = src.pair_at(l, kp, kc);
            }
        }
    }

    /// Panel-major panels from lanes contiguous in memory: for each k-pair, 8 lanes of two rows of k at a time,
    /// masked at the last valid lane and at the panel's end (the padding written as zeros).
    ///
    /// # Safety
    /// The CPU must have AVX2; `src.lane_stride` is 1 and the block fits (`block`'s assert).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn panel_major(
        src: Source<'_>,
        lanes: usize,
        width: usize,
        padded: usize,
        kc: usize,
        out: &mut [u32],
    ) {
        let kc2 = kc.div_ceil(2);
        for panel in 0..padded / width {
            for kp in 0..kc2 {
                let at = panel * width * kc2 + kp * width;
                for c in (0..width).step_by(8) {
                    let l0 = panel * width + c;
                    let (stored, loaded) = ((width - c).min(8), lanes.saturating_sub(l0).min(8).min(width - c));
                    // SAFETY: the masked loads read only valid lanes of rows 2 kp and 2 kp + 1 (below `kc`),
                    // inside `src.data` by the block's assert; the masked store writes only this panel's lanes.
                    unsafe {
                        let mut pairs = _mm256_setzero_si256();
                        if loaded > 0 {
                            let mask = first(loaded);
                            let row = src.data.as_ptr().add(src.offset + l0 + 2 * kp * src.k_stride);
                            pairs = round8(_mm256_maskload_ps(row, mask));
                            if 2 * kp + 1 < kc {
                                let hi = round8(_mm256_maskload_ps(row.add(src.k_stride), mask));
                                pairs = _mm256_or_si256(pairs, _mm256_slli_epi32::<16>(hi));
                            }
                        }
                        // A masked store is slow on AMD's cores: whole vectors are stored plainly, a panel's
                        // last few lanes one by one.
                        if stored == 8 {
                            _mm256_storeu_si256(out[at + c..at + c + 8].as_mut_ptr().cast(), pairs);
                        } else {
                            let mut lanes = [0u32; 8];
                            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), pairs);
                            out[at + c..at + c + stored].copy_from_slice(&lanes[..stored]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{INTERLEAVE, Source};

    /// The mask of the first `n` (at most 16) lanes.
    #[inline(always)]
    fn first(n: usize) -> u16 {
        if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
    }

    /// Converts the run of `kc` floats at `src` (unit stride) into `kc.div_ceil(2)` pairs at `out`.
    ///
    /// # Safety
    /// As for the callers: AVX512-BF16, the run readable, `out` writable for its pairs.
    #[inline(always)]
    unsafe fn convert_run(src: *const f32, kc: usize, out: *mut u32) {
        // SAFETY: masked loads stop at `kc` floats and masked stores at `kc.div_ceil(2)` pairs; addresses of
        // masked-off lanes are formed with `wrapping_add` and never touched.
        unsafe {
            for t in (0..kc).step_by(32) {
                let left = kc - t;
                let lo = _mm512_maskz_loadu_ps(first(left), src.wrapping_add(t));
                let hi = _mm512_maskz_loadu_ps(first(left.saturating_sub(16)), src.wrapping_add(t + 16));
                let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(out.add(t / 2).cast(), first(left.div_ceil(2)), bf);
            }
        }
    }

    /// [`super::halves`] with the instructions, 16 floats at a time (masked at the end).
    ///
    /// # Safety
    /// The CPU must have AVX512-F, -BW, -VL and -BF16 (every CPU with AVX512-BF16 has the others), and `out` hold
    /// `src.len()` halves.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn convert_halves(src: &[f32], out: &mut [u16]) {
        assert!(out.len() >= src.len());
        for t in (0..src.len()).step_by(16) {
            let mask = first(src.len() - t);
            // SAFETY: the masked load and store touch only elements `t..` of the two slices' lengths.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(t));
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_mask_storeu_epi16(out.as_mut_ptr().add(t).cast(), mask, h);
            }
        }
    }

    /// Row-major panels from lanes contiguous in k: each lane one run, the padding lanes zeros.
    ///
    /// # Safety
    /// The CPU must have AVX512-F, -BW and -BF16; the block must fit `src.data` and `out` hold
    /// `padded * kc.div_ceil(2)` pairs (checked by the caller).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn row_major(src: Source<'_>, lanes: usize, padded: usize, kc: usize, out: &mut [u32]) {
        let kc2 = kc.div_ceil(2);
        // Panel p's lane i sits at (p * width + i) * kc2 = l * kc2: the panels of a row-major block are one
        // row-major matrix.
        // SAFETY: lane `l < lanes` reads its run inside `src.data`; every write is inside `out`.
        unsafe {
            let base = src.data.as_ptr().wrapping_add(src.offset);
            for l in 0..lanes {
                convert_run(base.add(l * src.lane_stride), kc, out.as_mut_ptr().add(l * kc2));
            }
        }
        out[lanes * kc2..padded * kc2].fill(0);
    }

    /// Row-major panels from lanes contiguous in memory (a transposed operand, for the tiles): the pairs of 16
    /// lanes made as [`panel_major`] makes them, 16 k-pairs at a time, then turned into 16 runs of a lane's
    /// pairs by a 16 x 16 transpose in registers (scattering each vector to its lanes' rows cost three times
    /// as much).
    ///
    /// # Safety
    /// As for [`row_major`], and `padded` is a multiple of 16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn row_major_lane_runs(src: Source<'_>, lanes: usize, padded: usize, kc: usize, out: &mut [u32]) {
        let kc2 = kc.div_ceil(2);
        assert!(padded.is_multiple_of(16) && out.len() >= padded * kc2);
        // SAFETY: masked loads touch only valid lanes of k below `kc`, inside `src.data`; the masked stores
        // write `out[(g + i) * kc2 + kp]` for `i < 16`, `g + i < padded` and `kp < kc2`, inside `out`.
        unsafe {
            let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
            let base = src.data.as_ptr().wrapping_add(src.offset);
            for g in (0..padded).step_by(16) {
                let load = first(lanes.saturating_sub(g));
                for kp0 in (0..kc2).step_by(16) {
                    let mut v = [_mm512_setzero_si512(); 16];
                    for (r, slot) in v.iter_mut().enumerate().take(kc2 - kp0) {
                        let (k0, k1) = (2 * (kp0 + r), 2 * (kp0 + r) + 1);
                        let lo = _mm512_maskz_loadu_ps(load, base.wrapping_add(k0 * src.k_stride + g));
                        let hi = if k1 < kc {
                            _mm512_maskz_loadu_ps(load, base.wrapping_add(k1 * src.k_stride + g))
                        } else {
                            _mm512_setzero_ps()
                        };
                        let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                        *slot = _mm512_permutexvar_epi16(idx, bf);
                    }
                    let store = first(kc2 - kp0);
                    for (i, row) in transpose16(v).into_iter().enumerate() {
                        _mm512_mask_storeu_epi32(out.as_mut_ptr().add((g + i) * kc2 + kp0).cast(), store, row);
                    }
                }
            }
        }
    }

    /// The 16 x 16 transpose of 32-bit words: word `c` of vector `r` becomes word `r` of vector `c`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
        // Within each 128-bit lane: pairs of rows interleaved by words, then by double words, so that
        // `u[4 * q + j]` holds, in lane `l`, word `4 * l + j` of rows `4 * q .. 4 * q + 4`.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for q in 0..4 {
            let (a, b) = (4 * q, 4 * q + 2);
            u[4 * q] = _mm512_unpacklo_epi64(t[a], t[b]);
            u[4 * q + 1] = _mm512_unpackhi_epi64(t[a], t[b]);
            u[4 * q + 2] = _mm512_unpacklo_epi64(t[a + 1], t[b + 1]);
            u[4 * q + 3] = _mm512_unpackhi_epi64(t[a + 1], t[b + 1]);
        }
        // Across lanes: output `4 * l + j` gathers lane `l` of `u[j]`, `u[4 + j]`, `u[8 + j]` and `u[12 + j]`.
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let w0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let w1 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
            let w2 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let w3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_i32x4::<0x88>(w0, w2);
            out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(w0, w2);
            out[8 + j] = _mm512_shuffle_i32x4::<0x88>(w1, w3);
            out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(w1, w3);
        }
        out
    }

    /// Panel-major panels from lanes contiguous in memory: per pair of k, two masked loads, one conversion and
    /// one interleave per 16 lanes.
    ///
    /// # Safety
    /// As for [`row_major`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn panel_major(
        src: Source<'_>,
        lanes: usize,
        width: usize,
        padded: usize,
        kc: usize,
        out: &mut [u32],
    ) {
        let kc2 = kc.div_ceil(2);
        // SAFETY: masked loads touch only valid lanes of columns below `kc`, inside `src.data`; stores touch
        // `out[p * width * kc2 + kp * width ..][..width]`.
        unsafe {
            let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
            let base = src.data.as_ptr().wrapping_add(src.offset);
            for p0 in (0..padded).step_by(width) {
                let panel = out.as_mut_ptr().add(p0 * kc2);
                for kp in 0..kc2 {
                    let (k0, k1) = (2 * kp, 2 * kp + 1);
                    for g in (0..width).step_by(16) {
                        let load = first(lanes.saturating_sub(p0 + g));
                        let lo = _mm512_maskz_loadu_ps(load, base.wrapping_add(k0 * src.k_stride + p0 + g));
                        let hi = if k1 < kc {
                            _mm512_maskz_loadu_ps(load, base.wrapping_add(k1 * src.k_stride + p0 + g))
                        } else {
                            _mm512_setzero_ps()
                        };
                        let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                        let pairs = _mm512_permutexvar_epi16(idx, bf);
                        _mm512_mask_storeu_epi32(panel.add(kp * width + g).cast(), first(width - g), pairs);
                    }
                }
            }
        }
    }

    /// Panel-major panels from lanes contiguous in k (the transposed weights of a convolution, packed once per
    /// call): each lane converted as a run, then its pairs spread over the panel.
    ///
    /// # Safety
    /// As for [`row_major`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn panel_major_k_runs(
        src: Source<'_>,
        lanes: usize,
        width: usize,
        padded: usize,
        kc: usize,
        out: &mut [u32],
    ) {
        let kc2 = kc.div_ceil(2);
        let mut run = vec![0u32; kc2];
        for l in 0..padded {
            let (panel, i) = (l / width, l % width);
            if l < lanes {
                // SAFETY: lane `l` reads its run inside `src.data`; `run` holds its pairs.
                unsafe {
                    let from = src.data.as_ptr().add(src.offset + l * src.lane_stride);
                    convert_run(from, kc, run.as_mut_ptr());
                }
            } else {
                run.fill(0);
            }
            let at = panel * width * kc2 + i;
            run.iter().enumerate().for_each(|(kp, &p)| out[at + kp * width] = p);
        }
    }
}

//! The bf16 micro-kernels: an `MR x 16*NV` block of the product from packed bf16 pairs, summed in f32.
//!
//! Both kernels read the same packed operands and compute the same numbers: the AVX512-BF16 one with
//! `vdpbf16ps`, the portable one with [`dot_pair`], the instruction's step written out (see `cpu/bf16.rs`),
//! in AVX2 and FMA instructions where the CPU has them (most x86-64 CPUs without AVX512-BF16), else in scalar
//! code.
//! The AMX kernel (`amx.rs`) reads them too, for A packed row-major, and differs in the last bits.
//! A row of A is read as a broadcast pair per k-pair, from `a + r * rs + kp * ks` (row-major or panel-major
//! packing, see `pack.rs`); B is panel-major, `16 * NV` pairs per k-pair.

use crate::cpu::bf16::{Bf16Kernel, dot_pair};

/// A packed panel of A: `MR` rows of k-pairs, pair `(r, kp)` at `ptr[r * rs + kp * ks]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct APanel<'a> {
    pub data: &'a [u32],
    pub rs: usize,
    pub ks: usize,
}

/// Where a kernel's tile goes: the valid `mr x nr` corner is added to (or, when not `add`, written over) the
/// strided destination, element `(i, j)` at `ptr[at + i * rs + j * cs]`, which holds `len` floats.
#[derive(Debug, Clone, Copy)]
pub(super) struct Out {
    pub ptr: *mut f32,
    pub len: usize,
    pub at: usize,
    pub rs: usize,
    pub cs: usize,
    pub mr: usize,
    pub nr: usize,
    pub add: bool,
}

impl Out {
    /// Checks that the corner lies inside the destination.
    pub(super) fn check(&self, mr_max: usize, nr_max: usize) {
        assert!(self.mr <= mr_max && self.nr <= nr_max);
        assert!(self.mr == 0 || self.nr == 0 || self.at + (self.mr - 1) * self.rs + (self.nr - 1) * self.cs < self.len);
    }
}

/// Sums `kc2` k-pairs of `a` (`MR` rows) against a B panel (`16 * NV` columns, `kc2 * 16 * NV` pairs), starting
/// from zero, and adds the tile to `out`, with `kernel`'s instructions. The tiles (`amx.rs`) need `MR` = 32,
/// A packed row-major (`a.ks` = 1) and the tiles configured on this thread (`amx::Tiles`), and may sum in place.
/// `denormal_sums` says whether a sum may come out denormal ([`no_denormal_sums`]): where none can, the portable
/// kernel's flushes change nothing and are left out.
///
/// # Safety
/// `out.ptr` must be valid for `out.len` floats, and no one else may touch the corner's elements meanwhile.
#[inline(always)]
pub(super) unsafe fn run<const MR: usize, const NV: usize>(
    kernel: Bf16Kernel,
    denormal_sums: bool,
    kc2: usize,
    a: APanel<'_>,
    b: &[u32],
    out: Out,
    tile: &mut [f32],
) {
    let nr = 16 * NV;
    assert!(b.len() >= kc2 * nr && tile.len() >= MR * nr);
    assert!(kc2 == 0 || (MR - 1) * a.rs + (kc2 - 1) * a.ks < a.data.len());
    out.check(MR, nr);
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Bf16Kernel::AmxBf16 => {
            assert!(MR == super::amx::MR && a.ks == 1, "the tiles read 32 rows of A packed row-major");
            // SAFETY: the CPU has AMX and the tiles are configured on this thread, as the caller promised; the
            // asserts above bound every read and write, and the caller owns the destination's corner.
            unsafe { super::amx::product::<NV>(kc2, a.data.as_ptr(), a.rs, b.as_ptr(), out, tile.as_mut_ptr()) };
            return;
        }
        Bf16Kernel::Avx512Bf16 => {
            // SAFETY: the caller checked the CPU for AVX512-BF16; every index read or written lies inside the
            // slices or the destination, by the asserts above, and the caller owns the destination's corner.
            unsafe { avx512::<MR, NV>(kc2, a.data.as_ptr(), a.rs, a.ks, b.as_ptr(), out, tile.as_mut_ptr()) };
            return;
        }
        Bf16Kernel::Portable => {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA; the asserts above bound every read, and `tile` holds
                // `MR * nr` floats.
                unsafe {
                    if denormal_sums {
                        avx2::<MR, true>(kc2, a.data.as_ptr(), a.rs, a.ks, b.as_ptr(), nr, tile.as_mut_ptr());
                    } else {
                        avx2::<MR, false>(kc2, a.data.as_ptr(), a.rs, a.ks, b.as_ptr(), nr, tile.as_mut_ptr());
                    }
                }
                // SAFETY: as the caller promised, and checked by `out.check`.
                unsafe { write_back(out, tile, nr) };
                return;
            }
        }
    }
    let _ = (kernel, denormal_sums);
    portable::<MR>(kc2, a, b, nr, tile);
    // SAFETY: as the caller promised, and checked by `out.check`.
    unsafe { write_back(out, tile, nr) };
}

/// The portable kernel: one [`dot_pair`] per product pair, in the instruction's order.
fn portable<const MR: usize>(kc2: usize, a: APanel<'_>, b: &[u32], nr: usize, tile: &mut [f32]) {
    let tile = &mut tile[..MR * nr];
    tile.fill(0.0);
    for kp in 0..kc2 {
        let bk = &b[kp * nr..(kp + 1) * nr];
        for r in 0..MR {
            let ap = a.data[r * a.rs + kp * a.ks];
            for (t, &bp) in tile[r * nr..(r + 1) * nr].iter_mut().zip(bk) {
                *t = dot_pair(*t, ap, bp);
            }
        }
    }
}

/// The portable kernel's numbers on a CPU with AVX2 and FMA but no bf16 instructions (AMD Zen 2 and 3, Intel
/// Haswell to Ice Lake), 8 columns a vector: each bf16 of a pair is widened to an f32 by a shift, and each
/// step of [`dot_pair`] is one f32 fused multiply-add (the product of two bf16 is exact, the sum rounded once)
/// whose result (and any denormal bf16 read) is flushed to a signed zero when denormal (when `FLUSH`: without,
/// twice as fast), the odd product first: `dot_pair`'s bits, a NaN's payload aside. The tile is summed in blocks
/// of up to 4 rows by 16 columns, whose 8 accumulators stay in registers; it is written to `tile`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must be readable at `r * rs + kp * ks` for `r < MR`, `kp < kc2`, `b`
/// for `kc2 * nr` words, and `tile` writable for `MR * nr` floats; `nr` is a multiple of 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<const MR: usize, const FLUSH: bool>(
    kc2: usize,
    a: *const u32,
    rs: usize,
    ks: usize,
    b: *const u32,
    nr: usize,
    tile: *mut f32,
) {
    if kc2 == 0 {
        // Nothing to read; the pointers need not even point into their slices.
        // SAFETY: the caller gives `tile` writable for `MR * nr` floats.
        unsafe { std::slice::from_raw_parts_mut(tile, MR * nr) }.fill(0.0);
        return;
    }
    let mut r0 = 0;
    // SAFETY: each block reads rows `r0..r0 + R` of A, which lie below `MR`, and columns below `nr`.
    unsafe {
        while r0 + 4 <= MR {
            avx2_rows::<4, FLUSH>(kc2, a.add(r0 * rs), rs, ks, b, nr, tile.add(r0 * nr));
            r0 += 4;
        }
        if r0 + 2 <= MR {
            avx2_rows::<2, FLUSH>(kc2, a.add(r0 * rs), rs, ks, b, nr, tile.add(r0 * nr));
            r0 += 2;
        }
        if r0 < MR {
            avx2_rows::<1, FLUSH>(kc2, a.add(r0 * rs), rs, ks, b, nr, tile.add(r0 * nr));
        }
    }
}

/// [`avx2`] for `R` rows of A, every 16 columns of the tile in turn.
///
/// # Safety
/// As for [`avx2`], for `R` rows.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_rows<const R: usize, const FLUSH: bool>(
    kc2: usize,
    a: *const u32,
    rs: usize,
    ks: usize,
    b: *const u32,
    nr: usize,
    tile: *mut f32,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer below, and the CPU has AVX2 and FMA.
    unsafe {
        let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
        let exponent = _mm256_set1_epi32(0x7f80_0000);
        let magnitude = _mm256_set1_epi32(0x7fff_ffff);
        // `x` with its magnitude cleared where its exponent is zero: a denormal becomes a zero of its sign.
        let flush = |x: __m256| {
            if !FLUSH {
                return x;
            }
            let bits = _mm256_castps_si256(x);
            let tiny = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent), _mm256_setzero_si256());
            _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_and_si256(tiny, magnitude), bits))
        };
        // The even (low) and odd (high) bf16 of each pair, as f32s; a denormal one reads as zero, as in the
        // instruction (`no_denormal_sums` says no where there is one, so without `FLUSH` there is none).
        let halves = |pairs: __m256i| {
            let lo = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(pairs));
            (flush(lo), flush(_mm256_castsi256_ps(_mm256_and_si256(pairs, high))))
        };
        for col in (0..nr).step_by(16) {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for kp in 0..kc2 {
                let bp = b.add(kp * nr + col);
                let (b0_lo, b0_hi) = halves(_mm256_loadu_si256(bp.cast()));
                let (b1_lo, b1_hi) = halves(_mm256_loadu_si256(bp.add(8).cast()));
                for (r, row) in acc.iter_mut().enumerate() {
                    let (a_lo, a_hi) = halves(_mm256_set1_epi32(*a.add(r * rs + kp * ks) as i32));
                    row[0] = flush(_mm256_fmadd_ps(a_lo, b0_lo, flush(_mm256_fmadd_ps(a_hi, b0_hi, row[0]))));
                    row[1] = flush(_mm256_fmadd_ps(a_lo, b1_lo, flush(_mm256_fmadd_ps(a_hi, b1_hi, row[1]))));
                }
            }
            for (r, row) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile.add(r * nr + col), row[0]);
                _mm256_storeu_ps(tile.add(r * nr + col + 8), row[1]);
            }
        }
    }
}

/// The AVX512-BF16 kernel: `MR * NV` accumulators in registers, one broadcast of A's pair per row and `NV`
/// loads of B per k-pair; the sums go straight into a destination with unit column stride (masked at its
/// edges), else through `tile`.
///
/// # Safety
/// The CPU must have AVX512-F, -BW and -BF16; `a` must be readable at `r * rs + kp * ks` for `r < MR`,
/// `kp < kc2`, `b` for `kc2 * 16 * NV` words, `tile` writable for `MR * 16 * NV` floats, and `out` as `run`
/// requires.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn avx512<const MR: usize, const NV: usize>(
    kc2: usize,
    a: *const u32,
    rs: usize,
    ks: usize,
    b: *const u32,
    out: Out,
    tile: *mut f32,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer below; the transmutes are between 64-byte vectors.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut bv = [_mm512_setzero_si512(); NV];
        for kp in 0..kc2 {
            let bp = b.add(kp * 16 * NV);
            for (v, slot) in bv.iter_mut().enumerate() {
                *slot = _mm512_loadu_si512(bp.add(v * 16).cast());
            }
            let ap = a.add(kp * ks);
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r * rs) as i32));
                for (v, sum) in row.iter_mut().enumerate() {
                    *sum = _mm512_dpbf16_ps(*sum, av, std::mem::transmute::<__m512i, __m512bh>(bv[v]));
                }
            }
        }
        if out.cs == 1 {
            for (r, row) in acc.iter().enumerate().take(out.mr) {
                let dst = out.ptr.add(out.at + r * out.rs);
                for (v, sum) in row.iter().enumerate() {
                    let lanes = out.nr.saturating_sub(v * 16).min(16);
                    if lanes == 0 {
                        break;
                    }
                    let mask = if lanes == 16 { u16::MAX } else { (1u16 << lanes) - 1 };
                    let p = dst.add(v * 16);
                    let value = if out.add { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), *sum) } else { *sum };
                    _mm512_mask_storeu_ps(p, mask, value);
                }
            }
            return;
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, sum) in row.iter().enumerate() {
                _mm512_storeu_ps(tile.add((r * NV + v) * 16), *sum);
            }
        }
        write_back(out, std::slice::from_raw_parts(tile, MR * 16 * NV), 16 * NV);
    }
}

/// Adds (or writes) the valid corner of `tile` (row-major, `ldt` floats a row) into `out`: 16 floats at a time
/// where the destination's columns are contiguous and the CPU has AVX512-F.
///
/// # Safety
/// As for [`run`]; the corner was checked against `out.len`.
pub(super) unsafe fn write_back(out: Out, tile: &[f32], ldt: usize) {
    #[cfg(target_arch = "x86_64")]
    if out.cs == 1 && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX512-F; the rest as the caller promised.
        unsafe { write_back_avx512(out, tile, ldt) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if out.cs == 1 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the rest as the caller promised.
        unsafe { write_back_avx2(out, tile, ldt) };
        return;
    }
    for i in 0..out.mr {
        for (j, &t) in tile[i * ldt..i * ldt + out.nr].iter().enumerate() {
            // SAFETY: inside `out.len` (checked by `Out::check`); the caller owns these elements.
            unsafe {
                let d = out.ptr.add(out.at + i * out.rs + j * out.cs);
                *d = if out.add { *d + t } else { t };
            }
        }
    }
}

/// [`write_back`] for a destination with contiguous columns, 8 floats at a time and the rest one by one (a
/// masked store is slow on AMD's cores).
///
/// # Safety
/// The CPU must have AVX2; `out.cs` is 1; the rest as for [`write_back`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn write_back_avx2(out: Out, tile: &[f32], ldt: usize) {
    use std::arch::x86_64::*;
    assert!(out.mr == 0 || (out.mr - 1) * ldt + out.nr <= tile.len());
    let whole = out.nr / 8 * 8;
    for i in 0..out.mr {
        let row = &tile[i * ldt..i * ldt + out.nr];
        // SAFETY: every element lies inside the tile row and the destination's corner (checked by `Out::check`),
        // which the caller owns.
        unsafe {
            let dst = out.ptr.add(out.at + i * out.rs);
            for j in (0..whole).step_by(8) {
                let t = _mm256_loadu_ps(row.as_ptr().add(j));
                let value = if out.add { _mm256_add_ps(_mm256_loadu_ps(dst.add(j)), t) } else { t };
                _mm256_storeu_ps(dst.add(j), value);
            }
            for (j, &t) in row.iter().enumerate().skip(whole) {
                let d = dst.add(j);
                *d = if out.add { *d + t } else { t };
            }
        }
    }
}

/// [`write_back`] for a destination with contiguous columns, with masked loads and stores at its right edge.
///
/// # Safety
/// The CPU must have AVX512-F; `out.cs` is 1; the rest as for [`write_back`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn write_back_avx512(out: Out, tile: &[f32], ldt: usize) {
    use std::arch::x86_64::*;
    assert!(out.mr == 0 || (out.mr - 1) * ldt + out.nr <= tile.len());
    for i in 0..out.mr {
        for j in (0..out.nr).step_by(16) {
            let lanes = (out.nr - j).min(16);
            let mask = if lanes == 16 { u16::MAX } else { (1u16 << lanes) - 1 };
            // SAFETY: the masked lanes lie inside the tile row (asserted) and the destination's corner (checked by
            // `Out::check`), which the caller owns.
            unsafe {
                let p = out.ptr.add(out.at + i * out.rs + j);
                let t = _mm512_maskz_loadu_ps(mask, tile.as_ptr().add(i * ldt + j));
                let value = if out.add { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), t) } else { t };
                _mm512_mask_storeu_ps(p, mask, value);
            }
        }
    }
}

/// Whether no sum of products of a bf16 from `a` and one from `b` can be denormal, so that flushing each sum
/// changes nothing: given the smallest exponents of their nonzero values ([`smallest_exponent`]), every product
/// is a multiple of `2^(ea - 127 - 7) * 2^(eb - 127 - 7)`, and so is every sum of them, rounded or not; from
/// `ea + eb >= 142` on, that is at least the smallest normal f32, `2^-126`, so a sum is zero or normal.
/// A denormal bf16 (exponent 0) always says no: the kernel reads it as zero only while it flushes.
pub(super) fn no_denormal_sums(a: u16, b: u16) -> bool {
    a != 0 && b != 0 && a + b >= 142
}

/// The smallest biased exponent among the nonzero bf16 of `pairs` (255 when all are zero); a denormal counts
/// as 0, so that [`no_denormal_sums`] says no.
pub(super) fn smallest_exponent(pairs: &[u32]) -> u16 {
    let exponent = |h: u32| if h & 0x7fff == 0 { 255 } else { (h >> 7) & 0xff };
    let scalar = |pairs: &[u32]| pairs.iter().fold(255, |m, &p| m.min(exponent(p & 0xffff)).min(exponent(p >> 16)));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        let vector = unsafe { smallest_exponent_avx2(pairs) };
        return vector.min(scalar(&pairs[pairs.len() / 8 * 8..])) as u16;
    }
    scalar(pairs) as u16
}

/// [`smallest_exponent`] of the pairs in whole vectors of 8 (the rest left out), as a u32.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn smallest_exponent_avx2(pairs: &[u32]) -> u32 {
    use std::arch::x86_64::*;
    let byte = _mm256_set1_epi32(0xff);
    let (low, high) = (_mm256_set1_epi32(0x7fff), _mm256_set1_epi32(0x7fff_0000));
    let zero = _mm256_setzero_si256();
    let mut least = _mm256_set1_epi32(255);
    for chunk in pairs.chunks_exact(8) {
        // SAFETY: the chunk holds 8 words.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        // Each half's exponent, or 255 where the half is a zero.
        let lo_zero = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, low), zero), byte);
        let hi_zero = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, high), zero), byte);
        let lo = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32::<7>(v), byte), lo_zero);
        let hi = _mm256_or_si256(_mm256_srli_epi32::<24>(_mm256_slli_epi32::<1>(v)), hi_zero);
        least = _mm256_min_epu32(least, _mm256_min_epu32(lo, hi));
    }
    let mut lanes = [0u32; 8];
    // SAFETY: `lanes` holds 8 words.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), least) };
    lanes.into_iter().min().unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::{APanel, Out, portable, run};
    use crate::cpu::bf16::{Bf16Kernel, pair, round};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A bf16 pair of values over the whole range, many of them tiny, so that sums of their products come out
    /// denormal (and are flushed), cancel to zeros of either sign, or overflow.
    fn random_pair(rng: &mut StdRng) -> u32 {
        let mut half = || {
            let exponent: i32 = match rng.random_range(0..9) {
                // A denormal bf16, which the instruction reads as zero (packing never makes one).
                8 => return rng.random_range(1..0x80) | (0x8000 * rng.random_range(0..2)),
                0 => rng.random_range(-70..-56),
                1 => rng.random_range(40..70),
                2 => return 0,
                _ => rng.random_range(-4..4),
            };
            round(rng.random_range(1.0f32..2.0) * 2f32.powi(exponent) * if rng.random() { -1.0 } else { 1.0 })
        };
        pair(half(), half())
    }

    /// `run`'s tile for `kernel` against the scalar kernel, for `MR` rows and `NV` vectors of 16 columns.
    fn check<const MR: usize, const NV: usize>(rng: &mut StdRng, kc2: usize) {
        let nr = 16 * NV;
        let a: Vec<u32> = (0..MR * kc2).map(|_| random_pair(rng)).collect();
        let b: Vec<u32> = (0..kc2 * nr).map(|_| random_pair(rng)).collect();
        let panel = APanel { data: &a, rs: kc2, ks: 1 };
        let mut want = vec![0.0; MR * nr];
        portable::<MR>(kc2, panel, &b, nr, &mut want);
        let mut got = vec![f32::NAN; MR * nr];
        let out = Out { ptr: got.as_mut_ptr(), len: got.len(), at: 0, rs: nr, cs: 1, mr: MR, nr, add: false };
        let mut tile = vec![0.0; MR * nr];
        // SAFETY: `got` holds the whole tile, and nothing else touches it.
        unsafe { run::<MR, NV>(Bf16Kernel::Portable, true, kc2, panel, &b, out, &mut tile) };
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{MR}x{nr}, element {i}: {g:e} vs {w:e}");
        }
    }

    /// Whichever instructions run the portable kernel here (AVX2 and FMA on most x86-64 CPUs), its numbers are
    /// the scalar kernel's, which the tests of `cpu/bf16.rs` hold to the AVX512-BF16 instruction's.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_portable_kernel_gives_the_scalar_kernels_bits() {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            eprintln!("skipped: this CPU has no AVX2 and FMA, so the portable kernel is the scalar one");
            return;
        }
        let mut rng = StdRng::seed_from_u64(19);
        for kc2 in [1, 2, 37, 128] {
            check::<12, 2>(&mut rng, kc2);
            check::<6, 4>(&mut rng, kc2);
            check::<7, 1>(&mut rng, kc2);
            check::<8, 3>(&mut rng, kc2);
        }
    }
}

//! The bf16 micro-kernels: an `MR x 16*NV` block of the product from packed bf16 pairs, summed in f32.
//!
//! Both kernels read the same packed operands and compute the same numbers: the AVX512-BF16 one with
//! `vdpbf16ps`, the portable one with [`dot_pair`], the instruction's step written out (see `cpu/bf16.rs`).
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
///
/// # Safety
/// `out.ptr` must be valid for `out.len` floats, and no one else may touch the corner's elements meanwhile.
#[inline(always)]
pub(super) unsafe fn run<const MR: usize, const NV: usize>(
    kernel: Bf16Kernel,
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
        Bf16Kernel::Portable => {}
    }
    let _ = kernel;
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

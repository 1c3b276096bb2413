//! The channel vectors the Winograd transforms are written on (single floats, or 16 in AVX-512), the 1-D
//! transform matrices, and the macro that compiles each kernel for both.

/// A vector of channels, on which the transforms are written once: one float at a time (`f32`, the
/// portable fallback) or 16 (`Avx512`). Every method is `inline(always)` and the kernels use no closures,
/// so that all of it compiles inside the kernels' AVX-512 versions. The kernels check their slices' lengths
/// once and then move data through raw pointers, free of per-vector bounds checks.
pub(super) trait Vector: Copy {
    const LANES: usize;
    fn zero() -> Self;
    /// Loads `len` (at most `LANES`) floats from `p` into the first lanes, zeroing the rest.
    ///
    /// # Safety
    /// `p..p + len` must be readable.
    unsafe fn load(p: *const f32, len: usize) -> Self;
    /// Transposes the `LANES x LANES` matrix in the first `LANES` vectors of `r`.
    fn transpose(r: &mut [Self; 16]);
    /// Asks for the cache line at `p` (which need not be valid) to be brought into the L1 cache.
    fn prefetch(p: *const f32);
    /// Stores the first `len` lanes at `p`.
    ///
    /// # Safety
    /// `p..p + len` must be writable.
    unsafe fn store(self, p: *mut f32, len: usize);
    /// Stores the first `len` lanes at `p` rounded to bf16, as `cpu::bf16::round` rounds (what the GEMM's
    /// packing would make of them).
    ///
    /// # Safety
    /// `p..p + len` must be writable.
    unsafe fn store_bf16(self, p: *mut u16, len: usize);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn half(self) -> Self;
    fn relu(self) -> Self;
}

impl Vector for f32 {
    const LANES: usize = 1;
    #[inline(always)]
    fn zero() -> Self {
        0.0
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, _len: usize) -> Self {
        // SAFETY: the caller guarantees `p` is readable.
        unsafe { *p }
    }
    #[inline(always)]
    fn transpose(_r: &mut [Self; 16]) {}
    #[inline(always)]
    fn prefetch(_p: *const f32) {}
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, _len: usize) {
        // SAFETY: the caller guarantees `p` is writable.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, _len: usize) {
        // SAFETY: the caller guarantees `p` is writable.
        unsafe { *p = crate::cpu::bf16::round(self) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn half(self) -> Self {
        0.5 * self
    }
    #[inline(always)]
    fn relu(self) -> Self {
        self.max(0.0)
    }
}

/// 16 channels in an AVX-512 register. Its methods are only reached through the kernels' `avx512` entry
/// points, which run after the CPU was found to have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx512(std::arch::x86_64::__m512);

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Avx512, Vector};

    /// The lane mask of the first `len` lanes.
    #[inline(always)]
    fn mask(len: usize) -> __mmask16 {
        if len >= 16 { 0xffff } else { ((1u32 << len) - 1) as __mmask16 }
    }

    // SAFETY (every block below): the CPU has AVX-512F, as `Avx512` is only used inside kernels entered
    // after checking; masked loads and stores touch only the `len` floats the caller vouches for.
    impl Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            Avx512(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, len: usize) -> Self {
            Avx512(unsafe { _mm512_maskz_loadu_ps(mask(len), p) })
        }
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
        }
        /// Four rounds of swapping the off-diagonal `b x b` blocks of every `2b x 2b` block, for
        /// `b = 8, 4, 2, 1`: rows `i` and `i + b` trade their `b`-lane halves through two-register permutes.
        #[inline(always)]
        fn transpose(r: &mut [Self; 16]) {
            for b in [8, 4, 2, 1] {
                let (mut lo, mut hi) = ([0i32; 16], [0i32; 16]);
                for l in 0..16 {
                    let top = l & b == 0;
                    lo[l] = if top { l } else { 16 + l - b } as i32;
                    hi[l] = if top { l + b } else { 16 + l } as i32;
                }
                unsafe {
                    let (lo, hi) = (_mm512_loadu_epi32(lo.as_ptr()), _mm512_loadu_epi32(hi.as_ptr()));
                    for i in 0..16 {
                        if i & b == 0 {
                            let (x, y) = (r[i].0, r[i + b].0);
                            r[i] = Avx512(_mm512_permutex2var_ps(x, lo, y));
                            r[i + b] = Avx512(_mm512_permutex2var_ps(x, hi, y));
                        }
                    }
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, len: usize) {
            unsafe { _mm512_mask_storeu_ps(p, mask(len), self.0) }
        }
        /// `cpu::bf16::round` in AVX-512F integer instructions (the kernels run on CPUs without AVX512-BF16
        /// too): a NaN keeps its top half with the quiet bit set, a denormal becomes the zero of its sign, and
        /// the rest round to nearest even by adding `0x7fff` plus the kept half's lowest bit.
        #[inline(always)]
        unsafe fn store_bf16(self, p: *mut u16, len: usize) {
            unsafe {
                let bits = _mm512_castps_si512(self.0);
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, self.0);
                let denormal = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
                let flushed = _mm512_mask_and_epi32(bits, denormal, bits, _mm512_set1_epi32(i32::MIN));
                let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(flushed), _mm512_set1_epi32(1));
                let bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd);
                let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(flushed, bias));
                let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
                let halves = _mm512_mask_blend_epi32(nan, rounded, quiet);
                _mm512_mask_cvtepi32_storeu_epi16(p.cast(), mask(len), halves)
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn half(self) -> Self {
            Avx512(unsafe { _mm512_mul_ps(self.0, _mm512_set1_ps(0.5)) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            Avx512(unsafe { _mm512_max_ps(self.0, _mm512_setzero_ps()) })
        }
    }
}

// The 1-D transforms, named after their matrices: `bt`, `at` and `gt` (in `weight_grad.rs`) apply `B^T`, `A^T`
// and `G^T`; `gm` and `am` (in `weight_grad.rs`) apply `G` and `A`.

/// `B^T` on a 4-vector: `(x0 - x2, x1 + x2, x2 - x1, x1 - x3)`.
#[inline(always)]
pub(super) fn bt<V: Vector>(x: [V; 4]) -> [V; 4] {
    [x[0].sub(x[2]), x[1].add(x[2]), x[2].sub(x[1]), x[1].sub(x[3])]
}

/// `G` on a 3-vector: `(g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)`.
#[inline(always)]
pub(super) fn gm<V: Vector>(x: [V; 3]) -> [V; 4] {
    let even = x[0].add(x[2]);
    [x[0], even.add(x[1]).half(), even.sub(x[1]).half(), x[2]]
}

/// `A^T` on a 4-vector: `(x0 + x1 + x2, x1 - x2 - x3)`.
#[inline(always)]
pub(super) fn at<V: Vector>(x: [V; 4]) -> [V; 2] {
    [x[0].add(x[1]).add(x[2]), x[1].sub(x[2]).sub(x[3])]
}

/// Element `j` of each of four 4-vectors.
#[inline(always)]
pub(super) fn column<V: Vector>(e: &[[V; 4]; 4], j: usize) -> [V; 4] {
    [e[0][j], e[1][j], e[2][j], e[3][j]]
}

/// Loads four vectors at `p + k * stride`.
///
/// # Safety
/// Each must be readable for `len` floats.
#[inline(always)]
pub(super) unsafe fn load4<V: Vector>(p: *const f32, stride: usize, len: usize) -> [V; 4] {
    // SAFETY: the caller vouches for the four ranges.
    unsafe {
        [V::load(p, len), V::load(p.add(stride), len), V::load(p.add(2 * stride), len), V::load(p.add(3 * stride), len)]
    }
}

/// Stores four vectors at `p + k * stride`.
///
/// # Safety
/// Each must be writable for `len` floats.
#[inline(always)]
pub(super) unsafe fn store4<V: Vector>(v: [V; 4], p: *mut f32, stride: usize, len: usize) {
    // SAFETY: the caller vouches for the four ranges.
    unsafe {
        v[0].store(p, len);
        v[1].store(p.add(stride), len);
        v[2].store(p.add(2 * stride), len);
        v[3].store(p.add(3 * stride), len);
    }
}

/// Defines `$name`, a generic kernel over `V: Vector` written once, which runs on `Avx512` vectors, compiled for
/// AVX-512, when the CPU has it (checked at run time), and on single floats otherwise.
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident<V>($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        pub(super) fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn kernel<V: Vector>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) {
                kernel::<Avx512>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                return unsafe { avx512($($arg),*) };
            }
            kernel::<f32>($($arg),*)
        }
    };
}
pub(super) use dispatch;

//! bfloat16 on the CPU: the rounding and dot-product step of the x86 instructions, in portable code, and which
//! instructions this CPU has (AMX tiles, AVX512-BF16 or neither).
//!
//! A bf16 is the top half of an f32: the same 8-bit exponent, 7 bits of mantissa. The conversion and the
//! multiply-add below are bit for bit what `vcvtne2ps2bf16` and `vdpbf16ps` (AVX512-BF16) compute, measured on
//! the instructions themselves by this file's tests: round to nearest even, denormal inputs read as zero, each
//! product of two bf16 exact and added to the running f32 sum with one rounding (a fused multiply-add), each
//! sum flushed to a signed zero when it is denormal, and of each pair of products the odd one added first. So the portable GEMM kernel, which is
//! written with these functions, gives the same numbers as the vector one.

use std::sync::OnceLock;

/// The bf16 bits of `x`, rounded to nearest even; denormals become a zero of their sign, and a NaN stays a
/// quiet NaN (`vcvtne2ps2bf16`).
#[inline(always)]
pub(crate) fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let bits = flush_bits(bits);
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 whose value is the bf16 `b`.
#[inline(always)]
pub(crate) fn widen(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `x` rounded to the nearest bf16 and widened back: what an f32 holds after a trip through bf16.
#[inline(always)]
pub(crate) fn round_f32(x: f32) -> f32 {
    widen(round(x))
}

/// A copy of `x` with every value rounded to bf16 (as f32s): what a direct kernel multiplies in a bf16 product.
pub(crate) fn rounded(x: &[f32]) -> Vec<f32> {
    let mut out = crate::cpu::alloc::take(x.len());
    #[cfg(target_arch = "x86_64")]
    if bf16_kernel().has_avx512_bf16() {
        // SAFETY: the CPU has AVX512-BF16; `out` is as long as `x`.
        unsafe { rounded_avx512(x, &mut out) };
        return out;
    }
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = round_f32(v));
    out
}

/// [`rounded`] 32 floats at a time: `vcvtne2ps2bf16`, then each bf16 widened back by a shift.
///
/// # Safety
/// The CPU must have AVX512-F, -BW and -BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rounded_avx512(x: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    assert_eq!(x.len(), out.len());
    let mut chunks = x.chunks_exact(32).zip(out.chunks_exact_mut(32));
    for (src, dst) in &mut chunks {
        // SAFETY: each chunk holds 32 floats; the transmute is between 64-byte vectors.
        unsafe {
            let lo = _mm512_loadu_ps(src.as_ptr());
            let hi = _mm512_loadu_ps(src.as_ptr().add(16));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            let widen = |half: __m256i| _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(half)));
            _mm512_storeu_ps(dst.as_mut_ptr(), widen(_mm512_castsi512_si256(bf)));
            _mm512_storeu_ps(dst.as_mut_ptr().add(16), widen(_mm512_extracti64x4_epi64::<1>(bf)));
        }
    }
    let tail = x.len() - x.len() % 32;
    out[tail..].iter_mut().zip(&x[tail..]).for_each(|(o, &v)| *o = round_f32(v));
}

/// `bits` with a denormal f32 replaced by the zero of its sign.
#[inline(always)]
fn flush_bits(bits: u32) -> u32 {
    if bits & 0x7f80_0000 == 0 { bits & 0x8000_0000 } else { bits }
}

/// `x`, or the zero of its sign when it is denormal.
#[inline(always)]
fn flush(x: f32) -> f32 {
    f32::from_bits(flush_bits(x.to_bits()))
}

/// Two bf16 as one 32-bit word, the unit the kernels move: `lo` (an even k) in the low half, `hi` (the odd k
/// after it) in the high half.
#[inline(always)]
pub(crate) fn pair(lo: u16, hi: u16) -> u32 {
    u32::from(lo) | (u32::from(hi) << 16)
}

/// One lane of `vdpbf16ps`: `acc + a.hi * b.hi + a.lo * b.lo` for two pairs of bf16, the odd products first.
/// Each step is a fused multiply-add: the product is exact (its exponent unbounded, so two finite bf16 never
/// give an infinite product on their own), the sum is rounded once to f32 and flushed to a signed zero when
/// denormal, and a denormal `acc` or bf16 reads as zero. In f64 the product of two bf16 is exact, and so is its sum
/// with an f32 unless the two are too far apart to change each other's rounding, so one conversion to f32
/// rounds as the instruction does.
#[inline(always)]
pub(crate) fn dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let fma = |acc: f32, x: u16, y: u16| {
        let (x, y) = (flush(widen(x)), flush(widen(y)));
        flush((f64::from(acc) + f64::from(x) * f64::from(y)) as f32)
    };
    let t = fma(flush(acc), (a >> 16) as u16, (b >> 16) as u16);
    fma(t, a as u16, b as u16)
}

/// The bf16 instructions the CPU kernels use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AMX-BF16 tiles (`tdpbf16ps`, Intel Sapphire Rapids on) for the matrix products whose left operand is
    /// row-major in k, and AVX512-BF16 for the rest: every AMX CPU has both.
    AmxBf16,
    /// AVX512-BF16 (`vdpbf16ps`): Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4 on.
    Avx512Bf16,
    /// No bf16 instructions: the portable kernel, which gives the same numbers as AVX512-BF16, more slowly.
    Portable,
}

impl Bf16Kernel {
    /// Whether the AVX512-BF16 instructions are there: for the packing and for every kernel but the tiles.
    pub fn has_avx512_bf16(self) -> bool {
        self != Bf16Kernel::Portable
    }
}

impl std::fmt::Display for Bf16Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bf16Kernel::AmxBf16 => "amx-bf16",
            Bf16Kernel::Avx512Bf16 => "avx512-bf16",
            Bf16Kernel::Portable => "portable",
        })
    }
}

/// Which bf16 kernel this CPU runs (checked once per process). The portable one says so on standard error the
/// first time a bf16 product runs. `TINY_AMX=0` keeps an AMX CPU on AVX512-BF16 (to compare the two).
pub fn bf16_kernel() -> Bf16Kernel {
    static KERNEL: OnceLock<Bf16Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            return if amx_tiles().is_ok() { Bf16Kernel::AmxBf16 } else { Bf16Kernel::Avx512Bf16 };
        }
        Bf16Kernel::Portable
    })
}

/// Whether the AMX tiles run here, or why not: the CPU must have AMX-TILE and AMX-BF16, `TINY_AMX=0` must not
/// be set, and Linux must let this process use the tiles. The tile data is 8 KiB of state per thread that the
/// kernel saves only for a process that asked for it, once, with `arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)` (the permission covers every thread of the process). Checked once per process.
pub fn amx_tiles() -> Result<(), &'static str> {
    static TILES: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *TILES.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID leaf 7, sub-leaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE (leaf 7 exists on every CPU
            // with AVX512, and reads as zeros on older ones).
            // `__cpuid_count` is an unsafe fn up to Rust 1.93 (the workspace's rust-version is older) and safe
            // after, where the block is unused.
            #[allow(unused_unsafe)]
            // SAFETY: every x86_64 CPU has CPUID; the leaf and sub-leaf are plain numbers.
            let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
            if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
                return Err("this CPU has no AMX-BF16 tiles");
            }
            if !std::arch::is_x86_feature_detected!("avx512bf16") {
                return Err("this CPU has AMX but not AVX512-BF16, which the packing uses");
            }
            if std::env::var("TINY_AMX").as_deref() == Ok("0") {
                return Err("TINY_AMX=0 turns the AMX tiles off");
            }
            if !request_tile_data() {
                return Err("Linux refused this process the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)");
            }
            Ok(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        Err("AMX exists only on x86-64")
    })
}

/// Asks Linux for the tile data permission; false where the kernel refuses or is not Linux.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes this process's permission to
    // use the tile state; `syscall` clobbers rcx and r11, declared below, and touches no memory of ours.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_data() -> bool {
    false
}

/// Says once per process, on standard error, that bf16 products run on the portable kernel.
pub(crate) fn notice_portable() {
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        eprintln!(
            "tiny: this CPU has no bf16 instructions (AVX512-BF16); bf16 matrix products run on the portable \
             kernel, which gives the same numbers as those instructions but is slower than fp32 on this CPU"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_with_denormals_flushed() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: the even one, 1, wins; 1 + 3 * 2^-8 goes up.
        assert_eq!(round(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(round(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(round(-2.5), 0xc020);
        assert_eq!(round(f32::MAX), 0x7f80, "past the largest bf16 rounds to infinity");
        assert_eq!(round(1e-39), 0x0000);
        assert_eq!(round(-1e-39), 0x8000);
        assert!(widen(round(f32::NAN)).is_nan());
        assert_eq!(round_f32(3.140625), 3.140625);
        // The vector copy rounds as the scalar function does, the tail past its 32-float chunks included.
        let x: Vec<f32> = (0..77).map(|i| (i as f32 * 0.37).sin() * 1e3 + 2f32.powi(-8)).collect();
        let want: Vec<f32> = x.iter().map(|&v| round_f32(v)).collect();
        assert_eq!(rounded(&x), want);
    }

    #[test]
    fn the_odd_products_go_first_and_denormal_sums_are_flushed() {
        let p = |lo: f32, hi: f32| pair(round(lo), round(hi));
        // 2^24 + 1 - 2^24: odd first, the 1 is lost against 2^24 before 2^24 cancels; even first it would stay.
        let big = 2f32.powi(24);
        assert_eq!(dot_pair(big, p(-1.0, 1.0), p(big, 1.0)), 0.0);
        assert_eq!(dot_pair(0.0, p(big, 1.0), p(-1.0, 1.0)), -big + 1.0);
        // A denormal intermediate sum is flushed before the even product is added.
        assert_eq!(dot_pair(0.0, p(2e-38, 1e-20), p(1.0, 1e-19)), round_f32(2e-38));
        // A denormal accumulator reads as zero, and so does a denormal bf16 (which `round` never makes).
        assert_eq!(dot_pair(1e-39, p(0.0, 1.0), p(0.0, 1.0)), 1.0);
        assert_eq!(dot_pair(0.0, pair(0x0073, 0), pair(0x7848, 0)), 0.0);
        // Each product is exact before it is added: once the sum is infinite, an overflowing product of the
        // other sign leaves it so (added as an f32 infinity it would make a NaN).
        assert_eq!(dot_pair(0.0, p(2e38, 2e38), p(-2e38, 2e38)), f32::INFINITY);
    }

    /// The portable conversion and step against the instructions, where the CPU has them.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_portable_functions_match_avx512_bf16_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        if !bf16_kernel().has_avx512_bf16() {
            eprintln!("skipped: this CPU has no AVX512-BF16 to compare with");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Values over the whole exponent range, denormals, zeros and infinities among them.
        let value = |rng: &mut rand::rngs::StdRng| {
            let e: u32 = rng.random_range(0..255);
            f32::from_bits((rng.random::<u32>() & 0x807f_ffff) | (e << 23))
        };
        for _ in 0..20_000 {
            let x: [f32; 32] = std::array::from_fn(|_| value(&mut rng));
            let acc: [f32; 16] = std::array::from_fn(|_| value(&mut rng) * 2f32.powi(-60));
            let (a, b): ([u32; 16], [u32; 16]) = (
                std::array::from_fn(|_| rng.random::<u32>() & 0x7f7f_7f7f ^ 0x2000_2000),
                std::array::from_fn(|_| rng.random::<u32>() & 0x7f7f_7f7f ^ (rng.random::<u32>() & 0x8000_8000)),
            );
            // SAFETY: the CPU has AVX512-BF16.
            let (hw_round, hw_dot) = unsafe { hardware(&x, &acc, &a, &b) };
            for i in 0..32 {
                let sw = round(x[i]);
                assert!(hw_round[i] == sw || x[i].is_nan(), "round({:e}): {:04x} vs {sw:04x}", x[i], hw_round[i]);
            }
            for i in 0..16 {
                let sw = dot_pair(acc[i], a[i], b[i]);
                assert!(
                    hw_dot[i].to_bits() == sw.to_bits() || (sw.is_nan() && hw_dot[i].is_nan()),
                    "dot_pair({:e}, {:08x}, {:08x}): {:e} vs {sw:e}",
                    acc[i],
                    a[i],
                    b[i],
                    hw_dot[i]
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn hardware(x: &[f32; 32], acc: &[f32; 16], a: &[u32; 16], b: &[u32; 16]) -> ([u16; 32], [f32; 16]) {
        use std::arch::x86_64::*;
        // SAFETY: every pointer is to an array of exactly one vector's size; the transmutes are between
        // 64-byte types.
        unsafe {
            let lo = _mm512_loadu_ps(x.as_ptr());
            let hi = _mm512_loadu_ps(x.as_ptr().add(16));
            let rounded: [u16; 32] = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            let av: __m512bh = std::mem::transmute(*a);
            let bv: __m512bh = std::mem::transmute(*b);
            let dot: [f32; 16] = std::mem::transmute(_mm512_dpbf16_ps(_mm512_loadu_ps(acc.as_ptr()), av, bv));
            (rounded, dot)
        }
    }
}

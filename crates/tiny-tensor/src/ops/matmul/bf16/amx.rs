//! The AMX-BF16 micro-kernel: a `32 x 16 * NV` block of the product on the tile unit, from the same packed pairs.
//!
//! A tile holds 16 rows of 64 bytes. With every tile configured so, A's tile is 16 rows by 16 k-pairs (a block
//! packed row-major, `pack::Layout::RowMajor`, or an im2col's rows), B's tile is 16 k-pairs by 16 columns (a
//! panel-major B panel *is* that layout, 16 columns at a time), and C's is 16 by 16 f32 sums. The kernel keeps
//! four sums (two tiles of rows by two of columns) in `tmm0..tmm3`, A in `tmm4`/`tmm5` and B in `tmm6`/`tmm7`,
//! and `tdpbf16ps` adds 16 k-pairs of products to each, 16 x 16 x 32 multiply-adds per instruction. A block of
//! k that is not a whole number of 16 pairs ends on copies of the last pairs padded with zeros, which add
//! nothing. A whole tile of a destination with contiguous columns is summed in place: loaded into the tiles
//! (zeroed for the first block of k of a product that writes over it), summed into, stored back. A tile at an
//! edge is summed from zero and added, as the vector kernels do. Which way a tile goes depends on the shapes
//! only, and the blocks of k are taken in turn, so a product's bits do not depend on the thread count; they
//! differ from AVX512-BF16's in the last places: the tile unit sums each row of products in its own order and
//! rounding, which Intel does not document (measured here, it matches neither `vdpbf16ps`'s order nor one
//! rounding per instruction). The kernel reads its B panel (one block of k) once per pair of column tiles;
//! keeping sums in the tiles over four blocks of k was slower (a simple_cnn step 32.3-33.0 ms against 30.8-32.4,
//! alternated): the panels then outgrow L1.
//!
//! The tile instructions are written with `asm!`: Rust has no stable AMX intrinsics. Each `asm!` names its tile
//! registers, which the compiler never allocates, so the tiles keep their values from one `asm!` to the next.

use super::kernel::{Out, write_back};

/// Rows of A in the kernel's block: two tiles of 16.
pub(super) const MR: usize = 32;
/// k-pairs in one tile of A (and rows of one of B): 64 bytes of pairs.
const KP: usize = 16;

/// The tile configuration (`ldtilecfg`'s 64-byte operand): palette 1, and all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

static CONFIG: Config = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    Config(c)
};

/// The tiles configured for the kernel on this thread, released (`tilerelease`) on drop, so a thread that is not
/// running a product carries no tile state.
pub(super) struct Tiles(());

impl Tiles {
    /// Configures the tiles.
    ///
    /// # Safety
    /// The CPU must have AMX-TILE and AMX-BF16, and Linux must have granted the tile data permission
    /// (`cpu::bf16::bf16_kernel` returned `AmxBf16`).
    pub(super) unsafe fn configure() -> Tiles {
        // SAFETY: as the caller promised; the configuration is 64 readable bytes.
        unsafe { std::arch::asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
        Tiles(())
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `configure`, so the CPU has AMX.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Sums `kc2` k-pairs of 32 rows of A (pair `(r, kp)` at `a[r * rs + kp]`) against a B panel (`16 * NV`
/// columns, pair `(kp, c)` at `b[kp * 16 * NV + c]`) into the corner of `out`: from zero, then added, or, for a
/// whole tile of a destination with contiguous columns, in place.
///
/// # Safety
/// The tiles must be configured on this thread ([`Tiles`]) and the CPU have AVX512-F; `a` must be readable for
/// 32 rows of `kc2` pairs at stride `rs`, `b` for `kc2 * 16 * NV` words, `tile` writable for `32 * 16 * NV`
/// floats, and `out` inside the destination, which no one else touches meanwhile.
#[inline(never)]
pub(super) unsafe fn product<const NV: usize>(
    kc2: usize,
    a: *const u32,
    rs: usize,
    b: *const u32,
    out: Out,
    tile: *mut f32,
) {
    let nr = 16 * NV;
    // The last pairs, padded to a whole tile with zeros: A's 32 rows, B's rows of pairs. Only made when there
    // are such pairs (zeroing them on every call cost a fifth of the kernel's time).
    let mut a_rest = std::mem::MaybeUninit::<[u32; MR * KP]>::uninit();
    let mut b_rest = std::mem::MaybeUninit::<[u32; KP * 64]>::uninit();
    let (whole, rest) = (kc2 / KP * KP, kc2 % KP);
    if rest > 0 {
        // SAFETY: the reads lie inside the ranges the caller vouched for (pairs `whole..kc2`); the writes zero
        // both copies whole, then fill the first `rest` pairs of each row.
        unsafe {
            let (a_to, b_to) = (a_rest.as_mut_ptr().cast::<u32>(), b_rest.as_mut_ptr().cast::<u32>());
            a_to.write_bytes(0, MR * KP);
            b_to.write_bytes(0, KP * 64);
            for r in 0..MR {
                std::ptr::copy_nonoverlapping(a.add(r * rs + whole), a_to.add(r * KP), rest);
            }
            std::ptr::copy_nonoverlapping(b.add(whole * nr), b_to, rest * nr);
        }
    }
    let two_rows = out.mr > 16;
    // A whole tile of a destination with contiguous columns is summed in place: loaded into the tiles (or
    // zeroed) and stored back, with no copy to add afterwards (that copy cost 5% of a resnet18 step).
    let in_place = out.cs == 1 && out.mr == MR && out.nr == nr;
    // SAFETY: in place, the corner starts at `out.at`, inside the destination (checked by the caller).
    let (c_base, t_stride) = if in_place { (unsafe { out.ptr.add(out.at) }, out.rs * 4) } else { (tile, nr * 4) };
    let (a_stride, b_stride) = (rs * 4, nr * 4);
    for g in (0..NV).step_by(2) {
        if g * 16 >= out.nr {
            break;
        }
        let two_cols = g + 1 < NV && (g + 1) * 16 < out.nr;
        // SAFETY: the tiles are configured (16 rows of 64 bytes each); every load reads 16 rows of 64 bytes
        // inside A's rows, B's panels or the padded copies, and every store writes 16 rows of 16 floats inside
        // `tile`, by the caller's contract.
        unsafe {
            let c = c_base.add(g * 16);
            let c_low = c.add(16 * t_stride / 4);
            if in_place && out.add {
                let load = |c: *const f32, tmm: usize| match tmm {
                    0 => {
                        std::arch::asm!("tileloadd tmm0, [{c} + {s}*1]", c = in(reg) c, s = in(reg) t_stride, options(nostack, readonly))
                    }
                    1 => {
                        std::arch::asm!("tileloadd tmm1, [{c} + {s}*1]", c = in(reg) c, s = in(reg) t_stride, options(nostack, readonly))
                    }
                    2 => {
                        std::arch::asm!("tileloadd tmm2, [{c} + {s}*1]", c = in(reg) c, s = in(reg) t_stride, options(nostack, readonly))
                    }
                    _ => {
                        std::arch::asm!("tileloadd tmm3, [{c} + {s}*1]", c = in(reg) c, s = in(reg) t_stride, options(nostack, readonly))
                    }
                };
                load(c, 0);
                if two_cols {
                    load(c.add(16), 1);
                }
                load(c_low, 2);
                if two_cols {
                    load(c_low.add(16), 3);
                }
            } else {
                std::arch::asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
            }
            let step = |a: *const u32, a_stride: usize, b: *const u32| {
                std::arch::asm!(
                    "tileloadd tmm4, [{a} + {sa}*1]",
                    "tileloadd tmm6, [{b} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    a = in(reg) a, sa = in(reg) a_stride, b = in(reg) b, sb = in(reg) b_stride,
                    options(nostack, readonly),
                );
                if two_cols {
                    std::arch::asm!(
                        "tileloadd tmm7, [{b} + {sb}*1]",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        b = in(reg) b.add(16), sb = in(reg) b_stride,
                        options(nostack, readonly),
                    );
                }
                if two_rows {
                    std::arch::asm!(
                        "tileloadd tmm5, [{a} + {sa}*1]",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        a = in(reg) a.add(16 * a_stride / 4), sa = in(reg) a_stride,
                        options(nostack, readonly),
                    );
                    if two_cols {
                        std::arch::asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                    }
                }
            };
            for kp in (0..whole).step_by(KP) {
                step(a.add(kp), a_stride, b.add(kp * nr + g * 16));
            }
            if rest > 0 {
                step(a_rest.as_ptr().cast(), KP * 4, b_rest.as_ptr().cast::<u32>().add(g * 16));
            }
            std::arch::asm!("tilestored [{c} + {s}*1], tmm0", c = in(reg) c, s = in(reg) t_stride, options(nostack));
            if two_cols {
                std::arch::asm!("tilestored [{c} + {s}*1], tmm1", c = in(reg) c.add(16), s = in(reg) t_stride, options(nostack));
            }
            if two_rows {
                let c = c_low;
                std::arch::asm!("tilestored [{c} + {s}*1], tmm2", c = in(reg) c, s = in(reg) t_stride, options(nostack));
                if two_cols {
                    std::arch::asm!("tilestored [{c} + {s}*1], tmm3", c = in(reg) c.add(16), s = in(reg) t_stride, options(nostack));
                }
            }
        }
    }
    if !in_place {
        // SAFETY: the rows and columns of the valid corner were all stored above; `out` is as the caller
        // promised.
        unsafe { write_back(out, std::slice::from_raw_parts(tile, MR * nr), nr) };
    }
}

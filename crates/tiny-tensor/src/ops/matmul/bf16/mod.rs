//! The CPU's bf16 matrix product: f32 operands rounded to bf16 as they are packed, products summed in f32.
//!
//! This is what autocast's bf16 means for a product on the CPU (see `autocast.rs`): the operands stay f32
//! tensors and only their packed copies are bf16, so the kernel reads half the bytes and runs `vdpbf16ps`, 32
//! multiply-adds per instruction where an f32 FMA does 16. The blocking is Goto's: B is packed in `KC`-deep
//! blocks of `16 * NV`-column panels, once and whole when it is reused ([`PackedB`]: the weights of a
//! convolution, for all its chunks) or made whole by its maker from bf16 halves (`PackedB::from_row_pairs`: a
//! weight gradient's im2col), or else one block at a time as the product reaches it; A is packed `MC` rows by
//! `KC` at a time; the kernel sums one `MR x 16 * NV` tile over a block of k from zero and adds it to the
//! destination. The tile's width follows `n` (the fewest padded columns), and `MR * NV` is always 24
//! accumulators. So every element is summed in the same order (k blocks in turn, pairs in turn within a
//! block) whatever the thread count and whichever kernel runs: the AVX512-BF16 and the portable kernel give
//! the same bits. On a CPU with AMX the products whose A can be packed row-major (all of the models') run on
//! the tiles instead (`amx.rs`): 32 rows at a time, the same blocks, their own order of sums within each tile
//! instruction, so their bits differ from the vector kernels' in the last places but still not with the thread
//! count.

#[cfg(target_arch = "x86_64")]
mod amx;
mod kernel;
mod pack;

pub(crate) use pack::{INTERLEAVE, as_halves, halves};
#[cfg(test)]
mod tests;

use std::ops::Range;

use kernel::{APanel, Out};
use pack::{Layout, Source};

use super::cpu::{Mat, MatMut};
use crate::cpu::bf16::{Bf16Kernel, bf16_kernel, notice_portable};
use crate::cpu::parallel;

/// Values of k in a block: a B panel of `KC / 2` pairs by 32 columns is 16 KiB, half of a 32 KiB L1.
const KC: usize = 256;
/// Rows of A in a block: 192 rows by `KC` is 96 KiB of pairs, kept in L2 while every B panel passes by.
const MC: usize = 192;
/// The fewest multiply-adds per thread worth a thread of its own.
const MIN_MACS_PER_THREAD: usize = 1 << 21;

/// The vectors of 16 columns in a tile for `n` columns: the fewest padded columns, 2 on a tie (then 3, 1, 4).
fn tile_vectors(n: usize) -> usize {
    [2, 3, 1, 4].into_iter().min_by_key(|&nv| n.div_ceil(16 * nv) * 16 * nv).unwrap_or(2)
}

/// B (`k x n`) rounded to bf16 and packed for the kernels: for each block of `KC` values of k, the panels of
/// `16 * nv` columns one after the other, each panel-major (`pack::Layout::PanelMajor`).
#[derive(Debug)]
pub(crate) struct PackedB {
    /// The pairs (a pooled buffer, given back on drop).
    data: Vec<u32>,
    k: usize,
    n: usize,
    nv: usize,
    kernel: Bf16Kernel,
    /// For the portable kernel, the smallest exponent of each block of k (`kernel::smallest_exponent`), found
    /// once here rather than by every product that reuses the packing.
    exponents: Vec<u16>,
}

impl Drop for PackedB {
    fn drop(&mut self) {
        crate::cpu::alloc::give_words(std::mem::take(&mut self.data));
    }
}

impl PackedB {
    /// Packs `b` for this CPU's kernel.
    pub(crate) fn new(b: Mat<'_>) -> PackedB {
        PackedB::for_kernel(b, cpu_kernel())
    }

    /// Packs `b` for `kernel` (whose instructions the CPU must have): the layout is the same for all three,
    /// the packing faster with AVX512-BF16.
    fn for_kernel(b: Mat<'_>, kernel: Bf16Kernel) -> PackedB {
        let vector = kernel.has_avx512_bf16();
        let (k, n) = (b.rows, b.cols);
        let nv = tile_vectors(n);
        let width = n.div_ceil(16 * nv) * 16 * nv;
        // Every block but the last has an even depth, so the blocks' pairs add up to `k.div_ceil(2)`. From the
        // buffer pool (packing writes every pair): a fresh zeroed buffer cost page faults each step, 3% of a
        // resnet18 step at 128 px, whose Winograd layers pack 16 weight matrices per call.
        let mut data = crate::cpu::alloc::take_words(k.div_ceil(2) * width);
        // The blocks of k are packed by all the threads: a convolution's weights (2.4M values for resnet18's
        // 512 -> 512 layers) are packed on every call, which one thread would do while the others wait.
        let blocks = k.div_ceil(KC);
        let ranges = parallel::ranges(blocks, KC * width);
        let pieces = parallel::split(&mut data, &ranges, KC / 2 * width);
        parallel::each(&ranges, pieces, |r, piece| {
            let mut at = 0;
            for k0 in r.map(|blk| blk * KC) {
                let kc = KC.min(k - k0);
                let len = kc.div_ceil(2) * width;
                pack_b(b, k0, kc, 0..n, nv, &mut piece[at..at + len], vector);
                at += len;
            }
        });
        PackedB::finish(data, k, n, nv, kernel)
    }

    /// Packs a `k x n` B that its maker writes two rows at a time, already as bf16 halves: `fill(kp, row)` writes
    /// rows `2 * kp` and `2 * kp + 1` through [`PairRow::put`], every column once (with no odd row where
    /// `2 * kp + 1` is `k`). The same pairs as [`PackedB::new`] of those rows in f32, when the halves are
    /// their rounding: an im2col (the rows of a convolution's weight gradient) made straight into the kernels'
    /// layout, with no f32 copy in between. The blocks of k are shared among the threads.
    pub(crate) fn from_row_pairs(k: usize, n: usize, fill: impl Fn(usize, &mut PairRow<'_>) + Sync) -> PackedB {
        let kernel = cpu_kernel();
        let nv = tile_vectors(n);
        let (nr, width) = (16 * nv, n.div_ceil(16 * nv) * 16 * nv);
        let mut data = crate::cpu::alloc::take_words(k.div_ceil(2) * width);
        let ranges = parallel::ranges(k.div_ceil(KC), KC * width);
        let pieces = parallel::split(&mut data, &ranges, KC / 2 * width);
        parallel::each(&ranges, pieces, |r, piece| {
            let mut at = 0;
            for k0 in r.map(|blk| blk * KC) {
                let kc2 = KC.min(k - k0).div_ceil(2);
                let block = &mut piece[at..at + kc2 * width];
                for kp in 0..kc2 {
                    // The padding columns of the last panel are zeros, as `new` packs them.
                    let end = (width / nr - 1) * nr * kc2 + (kp + 1) * nr;
                    block[end - (width - n)..end].fill(0);
                    let odd = 2 * (k0 / 2 + kp) + 1 < k;
                    fill(k0 / 2 + kp, &mut PairRow { block: &mut *block, kp, kc2, nr, n, odd });
                }
                at += kc2 * width;
            }
        });
        PackedB::finish(data, k, n, nv, kernel)
    }

    /// The packing `data` of B (`k x n`) in `nv`-vector panels for `kernel`, with the portable kernel's exponents.
    fn finish(data: Vec<u32>, k: usize, n: usize, nv: usize, kernel: Bf16Kernel) -> PackedB {
        let mut packed = PackedB { data, k, n, nv, kernel, exponents: Vec::new() };
        if kernel == Bf16Kernel::Portable {
            let blocks = k.div_ceil(KC);
            packed.exponents = (0..blocks).map(|blk| kernel::smallest_exponent(packed.block(blk * KC))).collect();
        }
        packed
    }

    /// Whether it was packed for a kernel with the AVX512-BF16 instructions.
    pub(crate) fn vector(&self) -> bool {
        self.kernel.has_avx512_bf16()
    }

    /// The pairs of the block of k starting at `k0`, all its panels.
    fn block(&self, k0: usize) -> &[u32] {
        let width = self.n.div_ceil(16 * self.nv) * 16 * self.nv;
        &self.data[k0 / 2 * width..(k0 / 2 + KC.min(self.k - k0).div_ceil(2)) * width]
    }
}

/// Two rows of B, an even one and the odd one after it, in a block that [`PackedB::from_row_pairs`] packs.
pub(crate) struct PairRow<'a> {
    /// The block's pairs, all its panels.
    block: &'a mut [u32],
    /// The pair of rows within the block (`fill` is handed the pair's index in all of B).
    kp: usize,
    /// The block's pairs per column.
    kc2: usize,
    /// Columns per panel.
    nr: usize,
    /// Columns of B.
    n: usize,
    /// Whether the pair's odd row is inside B.
    odd: bool,
}

impl PairRow<'_> {
    /// Writes columns `j..j + even.len()` of the two rows: `even` the bf16 halves of the even row, `odd` those of
    /// the odd row, which is `None` exactly where that row is past B's end (its halves are then zeros, as the
    /// kernels need of the padding).
    #[inline]
    pub(crate) fn put(&mut self, j: usize, even: &[u16], odd: Option<&[u16]>) {
        assert!(j + even.len() <= self.n, "PairRow::put: columns outside B");
        assert!(odd.is_some() == self.odd && odd.is_none_or(|o| o.len() == even.len()), "PairRow::put: no such row");
        // One piece per panel the run crosses (most runs lie inside one).
        let (mut j, mut done) = (j, 0);
        while done < even.len() {
            let (panel, l) = (j / self.nr, j % self.nr);
            let len = (self.nr - l).min(even.len() - done);
            let at = panel * self.nr * self.kc2 + self.kp * self.nr + l;
            let hi = odd.map(|o| &o[done..done + len]);
            pack::interleave(&even[done..done + len], hi, &mut self.block[at..at + len]);
            (j, done) = (j + len, done + len);
        }
    }
}

/// Packs rows `k0..k0 + kc` of columns `cols` (which start on a panel) of `b` into `out`.
fn pack_b(b: Mat<'_>, k0: usize, kc: usize, cols: Range<usize>, nv: usize, out: &mut [u32], vector: bool) {
    let src =
        Source { data: b.data, offset: b.offset + k0 * b.rs + cols.start * b.cs, lane_stride: b.cs, k_stride: b.rs };
    pack::block(src, cols.len(), 16 * nv, kc, Layout::PanelMajor, out, vector);
}

/// The kernel this CPU runs; says once that it is the portable one, when it is.
pub(crate) fn cpu_kernel() -> Bf16Kernel {
    let kernel = bf16_kernel();
    if kernel == Bf16Kernel::Portable {
        notice_portable();
    }
    kernel
}

/// `dst = a @ b`, or `dst += a @ b` when `accumulate`, in bf16 with f32 sums; `threads` may share the work.
pub(crate) fn gemm(dst: MatMut<'_>, accumulate: bool, a: Mat<'_>, b: Mat<'_>, threads: usize) {
    assert!(a.cols == b.rows, "gemm: inner shapes checked by the caller");
    let kernel = cpu_kernel();
    product(dst, accumulate, Lhs::F32(a), Rhs::Streamed { b, nv: tile_vectors(b.cols), kernel }, threads);
}

/// [`gemm`] with B packed beforehand, and A as f32 or as rows of pairs already converted ([`Lhs::Rows`]).
pub(crate) fn gemm_packed(dst: MatMut<'_>, accumulate: bool, a: Lhs<'_>, b: &PackedB, threads: usize) {
    assert!(a.cols() == b.k && dst.cols == b.n, "gemm: shapes checked by the caller");
    product(dst, accumulate, a, Rhs::Packed(b), threads);
}

/// The left operand of a product: f32, rounded and packed by the product, or rows already rounded into pairs
/// by their maker (an im2col written straight into bf16: `pack::rows` lays out what the kernels read).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lhs<'a> {
    F32(Mat<'a>),
    /// `rows` rows of `k` values as `k.div_ceil(2)` pairs each, row `i` at `data[i * stride..]` (`stride` at least
    /// `k.div_ceil(2)`: an im2col's rows are back to back, a Winograd chunk's 16 matrices interleaved), followed
    /// by readable rows (of any values) up to a multiple of [`ROW_PADDING`]: the kernels read whole tiles of rows
    /// and write only the valid ones.
    Rows {
        data: &'a [u32],
        rows: usize,
        k: usize,
        stride: usize,
    },
}

/// What the rows of an [`Lhs::Rows`] are padded to: a multiple of every tile height (24, 12, 8, 6, and the
/// tiles' 32).
pub(crate) const ROW_PADDING: usize = 96;

impl Lhs<'_> {
    fn rows(&self) -> usize {
        match self {
            Lhs::F32(a) => a.rows,
            Lhs::Rows { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Lhs::F32(a) => a.cols,
            Lhs::Rows { k, .. } => *k,
        }
    }
}

/// The right operand of one product: packed whole beforehand, or packed a block at a time by each thread.
#[derive(Clone, Copy)]
enum Rhs<'a> {
    Packed(&'a PackedB),
    Streamed { b: Mat<'a>, nv: usize, kernel: Bf16Kernel },
}

impl Rhs<'_> {
    /// The tile's vectors of 16 columns, the number of columns, and the kernel it was packed for.
    fn shape(&self) -> (usize, usize, Bf16Kernel) {
        match self {
            Rhs::Packed(p) => (p.nv, p.n, p.kernel),
            Rhs::Streamed { b, nv, kernel } => (*nv, b.cols, *kernel),
        }
    }
}

fn product(dst: MatMut<'_>, accumulate: bool, a: Lhs<'_>, b: Rhs<'_>, threads: usize) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols());
    assert!(a.rows() == m, "gemm: shapes checked by the caller");
    if let Lhs::Rows { data, rows, k, stride } = a {
        assert!(stride >= k.div_ceil(2), "gemm: rows overlap");
        let padded = rows.div_ceil(ROW_PADDING) * ROW_PADDING;
        assert!(padded == 0 || data.len() >= (padded - 1) * stride + k.div_ceil(2), "gemm: unpadded rows");
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| (0..n).for_each(|j| dst.data[dst.offset + i * dst.rs + j * dst.cs] = 0.0));
        }
        return;
    }
    let dst_last = dst.offset + (m - 1) * dst.rs + (n - 1) * dst.cs;
    assert!(dst_last < dst.data.len(), "gemm: destination out of bounds");
    // Blocks of rows (or of panels) are disjoint in memory only if no two elements share an address.
    assert!(dst.rs > (n - 1) * dst.cs || dst.cs > (m - 1) * dst.rs || m == 1 || n == 1);
    let (nv, _, kernel) = b.shape();
    // The tiles read A packed row-major: an A contiguous neither in k nor across rows (no product of the
    // models has one) goes to AVX512-BF16 instead.
    let kernel = match (kernel, a) {
        (Bf16Kernel::AmxBf16, Lhs::F32(a)) if a.cs != 1 && a.rs != 1 => Bf16Kernel::Avx512Bf16,
        _ => kernel,
    };
    if kernel == Bf16Kernel::AmxBf16 {
        return match nv {
            1 => run::<32, 1>(dst, accumulate, a, b, kernel, threads),
            3 => run::<32, 3>(dst, accumulate, a, b, kernel, threads),
            4 => run::<32, 4>(dst, accumulate, a, b, kernel, threads),
            _ => run::<32, 2>(dst, accumulate, a, b, kernel, threads),
        };
    }
    match nv {
        1 => run::<24, 1>(dst, accumulate, a, b, kernel, threads),
        3 => run::<8, 3>(dst, accumulate, a, b, kernel, threads),
        4 => run::<6, 4>(dst, accumulate, a, b, kernel, threads),
        _ => run::<12, 2>(dst, accumulate, a, b, kernel, threads),
    }
}

/// The destination, shared by the threads of one product: each writes only its own tiles through it.
#[derive(Clone, Copy)]
struct Dst {
    ptr: *mut f32,
    len: usize,
    offset: usize,
    rs: usize,
    cs: usize,
}
// SAFETY: the threads of `run` write disjoint tiles (rows or panels) and nothing else touches the destination
// while they run: it is borrowed mutably for the whole call.
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// The loops around the kernel, for `MR x 16 * NV` tiles, with rows or panels shared among threads.
fn run<const MR: usize, const NV: usize>(
    dst: MatMut<'_>,
    accumulate: bool,
    a: Lhs<'_>,
    b: Rhs<'_>,
    kernel: Bf16Kernel,
    threads: usize,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols());
    let (row_blocks, panels) = (m.div_ceil(MR), n.div_ceil(16 * NV));
    let out = Dst { ptr: dst.data.as_mut_ptr(), len: dst.data.len(), offset: dst.offset, rs: dst.rs, cs: dst.cs };
    let by_rows = m >= n;
    let units = if by_rows { row_blocks } else { panels };
    let parts = threads.min(m.saturating_mul(n).saturating_mul(k) / MIN_MACS_PER_THREAD).clamp(1, units);
    parallel::each_range(&parallel::even(units, parts), |r| {
        let (rows, cols) = if by_rows { ((r.start * MR).min(m)..(r.end * MR).min(m), 0..panels) } else { (0..m, r) };
        part::<MR, NV>(out, accumulate, a, b, kernel, rows, cols);
    });
}

/// Rows `rows` (starting on a multiple of `MR`) by panels `panels` of the product.
fn part<const MR: usize, const NV: usize>(
    out: Dst,
    accumulate: bool,
    a: Lhs<'_>,
    b: Rhs<'_>,
    kernel: Bf16Kernel,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let nr = 16 * NV;
    // SAFETY: `kernel` is AMX only where `bf16_kernel` found the tiles and the permission to use them.
    #[cfg(target_arch = "x86_64")]
    let _tiles = (kernel == Bf16Kernel::AmxBf16).then(|| unsafe { amx::Tiles::configure() });
    // Scratch kept by each thread from call to call: a product's packing writes every pair it then reads, so
    // the buffers are neither zeroed nor given back (a fresh zeroed one per call cost 1-4% of a step).
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { a: packed_a, b: streamed, tile } = scratch;
        grow(packed_a, if matches!(a, Lhs::F32(_)) { MC.div_ceil(MR) * MR * KC.div_ceil(2) } else { 0 });
        grow(streamed, if matches!(b, Rhs::Streamed { .. }) { panels.len() * nr * KC.div_ceil(2) } else { 0 });
        grow(tile, MR * nr);
        blocks::<MR, NV>(out, accumulate, a, b, kernel, rows, panels, packed_a, streamed, tile);
    });
}

/// A thread's packing buffers (see `part`).
#[derive(Default)]
struct Scratch {
    a: Vec<u32>,
    b: Vec<u32>,
    tile: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Makes `v` at least `len` long.
fn grow<T: Default + Clone>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// `part`'s loops over blocks of k, of rows and of panels, with its scratch buffers.
#[allow(clippy::too_many_arguments)]
fn blocks<const MR: usize, const NV: usize>(
    out: Dst,
    accumulate: bool,
    a: Lhs<'_>,
    b: Rhs<'_>,
    kernel: Bf16Kernel,
    rows: Range<usize>,
    panels: Range<usize>,
    packed_a: &mut [u32],
    streamed: &mut [u32],
    tile: &mut [f32],
) {
    let ((_, n, packed_for), k, nr) = (b.shape(), a.cols(), 16 * NV);
    let vector = packed_for.has_avx512_bf16();
    // Rows contiguous in k (an im2col matrix) pack row-major, each row one run; others panel-major, but always
    // row-major for the tiles.
    let layout = match a {
        Lhs::F32(a) if a.cs != 1 && kernel != Bf16Kernel::AmxBf16 => Layout::PanelMajor,
        _ => Layout::RowMajor,
    };
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let kc2 = kc.div_ceil(2);
        // This block of B, from its first panel: the part's own panels, packed now, or the packed whole.
        let (b_block, first_panel) = match b {
            Rhs::Packed(p) => (p.block(k0), 0),
            Rhs::Streamed { b, nv, .. } => {
                let cols = panels.start * nr..(panels.end * nr).min(n);
                let len = panels.len() * nr * kc2;
                pack_b(b, k0, kc, cols, nv, &mut streamed[..len], vector);
                (&streamed[..len], panels.start)
            }
        };
        // The portable kernel flushes each denormal sum, as the instruction does, unless the smallest exponents
        // of this block of B and of a block of A show that none can arise.
        let portable = kernel == Bf16Kernel::Portable;
        let b_exponent = match b {
            _ if !portable => 0,
            // All the panels': at most this part's smallest, so a flush is never left out wrongly.
            Rhs::Packed(p) => p.exponents[k0 / KC],
            Rhs::Streamed { .. } => kernel::smallest_exponent(b_block),
        };
        for i0 in rows.clone().step_by(MC) {
            let mc = MC.min(rows.end - i0);
            // This block of A, from row i0 and k0, with pair (r, kp) of its panel `ib` at
            // `a_block[ib * a_step + r * a_rs + kp * a_ks]`.
            let (a_block, a_step, a_rs, a_ks): (&[u32], usize, usize, usize) = match a {
                Lhs::F32(a) => {
                    let at = a.offset + i0 * a.rs + k0 * a.cs;
                    let src = Source { data: a.data, offset: at, lane_stride: a.rs, k_stride: a.cs };
                    pack::block(src, mc, MR, kc, layout, packed_a, vector);
                    match layout {
                        Layout::RowMajor => (&*packed_a, MR * kc2, kc2, 1),
                        Layout::PanelMajor => (&*packed_a, MR * kc2, 1, MR),
                    }
                }
                Lhs::Rows { data, stride, .. } => (&data[i0 * stride + k0 / 2..], MR * stride, stride, 1),
            };
            let a_exponent = match a {
                _ if !portable => 0,
                Lhs::F32(_) => kernel::smallest_exponent(&a_block[..mc.div_ceil(MR) * MR * kc2]),
                // Only the valid rows: the padding's sums are never written.
                Lhs::Rows { .. } => {
                    (0..mc).map(|r| kernel::smallest_exponent(&a_block[r * a_rs..r * a_rs + kc2])).min().unwrap_or(255)
                }
            };
            let denormal_sums = portable && !kernel::no_denormal_sums(a_exponent, b_exponent);
            for jp in panels.clone() {
                let at = (jp - first_panel) * nr * kc2;
                let panel = &b_block[at..at + nr * kc2];
                for ib in 0..mc.div_ceil(MR) {
                    let a_panel = APanel { data: &a_block[ib * a_step..], rs: a_rs, ks: a_ks };
                    let (i, j) = (i0 + ib * MR, jp * nr);
                    let to = Out {
                        ptr: out.ptr,
                        len: out.len,
                        at: out.offset + i * out.rs + j * out.cs,
                        rs: out.rs,
                        cs: out.cs,
                        mr: MR.min(rows.end - i),
                        nr: nr.min(n - j),
                        add: accumulate || k0 > 0,
                    };
                    // SAFETY: the destination outlives the call and no other thread writes these rows and
                    // columns (the kernel checks them against the destination's length).
                    unsafe { kernel::run::<MR, NV>(kernel, denormal_sums, kc2, a_panel, panel, to, tile) };
                }
            }
        }
    }
}

//! The CPU's matrix multiplication through the `gemm` crate, on strided views (transposes cost nothing).

use gemm::Parallelism;

use super::{MatmulKernels, bf16};
use crate::autocast::Precision;
use crate::cpu::{Cpu, alloc, num_threads, parallel};
use crate::layout::Layout;
use crate::{Result, Storage, Tensor};

impl MatmulKernels for Cpu {
    fn matmul3(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, precision: Precision) -> Result<Tensor> {
        let (sa, sb) = (a.storage(), b.storage());
        let (data, shape) = matmul3(sa.host(), al, sb.host(), bl, precision);
        Ok(Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(&shape)))
    }
}

/// A read-only strided matrix inside a slice: element `(i, j)` is `data[offset + i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A writable strided matrix inside a slice.
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, offset: 0, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Mat { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    fn last(&self) -> usize {
        self.offset + (self.rows.max(1) - 1) * self.rs + (self.cols.max(1) - 1) * self.cs
    }
}

impl<'a> MatMut<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut { data, offset: 0, rows, cols, rs: cols, cs: 1 }
    }
}

/// The fewest multiply-adds per thread worth a thread of its own.
const MIN_MACS_PER_THREAD: usize = 1 << 21;
/// The longest side of a GEMM that the gemm crate treats as small (see `gemm`).
const MIN_SPLIT_SIDE: usize = 64;

/// `dst = a @ b`, or `dst += a @ b` when `accumulate`, its products in `precision`; with `threads` > 1 the work
/// is split among threads. bf16 goes to `bf16::gemm`, which splits its own work.
///
/// The split is ours, not the `gemm` crate's: its own threading gave no speedup on the shapes of resnet18's
/// deep layers (1,024 x 256 x 2,304: 6.0 ms on one thread and on two). `dst` is cut into blocks of rows or of
/// columns, one per thread, whichever makes the threads re-pack the smaller operand: cutting rows makes each
/// thread pack all of `b`, cutting columns all of `a`.
pub(crate) fn gemm(dst: MatMut<'_>, accumulate: bool, a: Mat<'_>, b: Mat<'_>, threads: usize, precision: Precision) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(a.rows == m && b.rows == k && b.cols == n, "gemm: inner shapes checked by the caller");
    if precision == Precision::Bf16 {
        return bf16::gemm(dst, accumulate, a, b, threads);
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.offset + i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    let dst_last = dst.offset + (m - 1) * dst.rs + (n - 1) * dst.cs;
    assert!(dst_last < dst.data.len() && a.last() < a.data.len() && b.last() < b.data.len());
    let threads = threads.min(m.saturating_mul(n).saturating_mul(k) / MIN_MACS_PER_THREAD).max(1);
    let by_rows = m >= n;
    let (long, short) = if by_rows { (m, n) } else { (n, m) };
    // The gemm crate blocks `k` by 512 when both sides are at most 64 (and by 1,024 when their product is at
    // most 256), and otherwise by a size that depends on `k` alone: blocks longer than 64 whose area stays
    // above 256 keep the whole call's blocking, so each element's sum runs in the same order and rounds to
    // the same bits as in the call without the split, whatever the thread count.
    let parts = threads.min(long / (MIN_SPLIT_SIDE + 1)).max(1);
    let parts = if (long / parts) * short > 256 || long * short <= 256 { parts } else { 1 };
    let (a_ptr, b_ptr) = (SendPtr(a.data.as_ptr().cast_mut()), SendPtr(b.data.as_ptr().cast_mut()));
    let d_ptr = SendPtr(dst.data.as_mut_ptr());
    // SAFETY: every index the kernel touches lies inside the slices (checked above), `dst` is borrowed mutably
    // and so cannot alias `a` or `b`, all strides are non-negative, and the blocks of `dst` are disjoint.
    let run = |r: std::ops::Range<usize>| unsafe {
        let (pd, pa, pb) = (d_ptr, a_ptr, b_ptr);
        let (i0, j0, mm, nn) = if by_rows { (r.start, 0, r.len(), n) } else { (0, r.start, m, r.len()) };
        gemm::gemm(
            mm,
            nn,
            k,
            pd.0.add(dst.offset + i0 * dst.rs + j0 * dst.cs),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            pa.0.add(a.offset + i0 * a.rs),
            a.cs as isize,
            a.rs as isize,
            pb.0.add(b.offset + j0 * b.cs),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    };
    if parts <= 1 {
        return run(0..long);
    }
    // Blocks of rows (or columns) are disjoint in memory only if no two elements of `dst` share an address.
    let distinct = dst.rs > (n - 1) * dst.cs || dst.cs > (m - 1) * dst.rs;
    assert!(distinct, "gemm: two elements of the destination share an address");
    parallel::each_range(&parallel::even(long, parts), run);
}

/// A GEMM's right operand prepared once for many products with it (the weights of a convolution, whose chunks
/// each multiply by them): as it is for f32 products, packed into bf16 for bf16 products.
#[derive(Debug)]
pub(crate) enum Rhs<'a> {
    F32(Mat<'a>),
    Bf16(bf16::PackedB),
}

impl<'a> Rhs<'a> {
    /// `b`, prepared for products in `precision`.
    pub(crate) fn new(b: Mat<'a>, precision: Precision) -> Self {
        match precision {
            Precision::Fp32 => Rhs::F32(b),
            Precision::Bf16 => Rhs::Bf16(bf16::PackedB::new(b)),
        }
    }
}

/// [`gemm`] with a prepared right operand.
pub(crate) fn gemm_rhs(dst: MatMut<'_>, accumulate: bool, a: Mat<'_>, b: &Rhs<'_>, threads: usize) {
    match b {
        Rhs::F32(b) => gemm(dst, accumulate, a, *b, threads, Precision::Fp32),
        Rhs::Bf16(b) => bf16::gemm_packed(dst, accumulate, bf16::Lhs::F32(a), b, threads),
    }
}

/// A pointer handed to the threads of one GEMM; each writes only its own block through it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only used by `gemm` above, whose threads touch disjoint blocks of the destination
// and only read the operands, all of which outlive the scope.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Batched `[batch, m, k] @ [batch, k, n]` on any strides; returns row-major data and its shape.
fn matmul3(a: &[f32], al: &Layout, b: &[f32], bl: &Layout, precision: Precision) -> (Vec<f32>, Vec<usize>) {
    let (batch, m, n) = (al.shape[0], al.shape[1], bl.shape[2]);
    let mut out = alloc::take(batch * m * n);
    // Matrix `i` of a `[batch, rows, cols]` layout, as a strided view.
    let batch_mat = |data, l: &Layout, i: usize| Mat {
        data,
        offset: l.offset + i * l.strides[0],
        rows: l.shape[1],
        cols: l.shape[2],
        rs: l.strides[1],
        cs: l.strides[2],
    };
    // One matrix against a batch (a batch stride of 0) is prepared once: in bf16 it is packed once, not per item.
    let shared = (bl.strides[0] == 0).then(|| Rhs::new(batch_mat(b, bl, 0), precision));
    for i in 0..batch {
        let lhs = batch_mat(a, al, i);
        let dst = MatMut { offset: i * m * n, ..MatMut::rows(&mut out, m, n) };
        match &shared {
            Some(rhs) => gemm_rhs(dst, false, lhs, rhs, num_threads()),
            None => gemm(dst, false, lhs, batch_mat(b, bl, i), num_threads(), precision),
        }
    }
    (out, vec![batch, m, n])
}

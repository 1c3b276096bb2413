//! The CPU's matrix multiplication through the `gemm` crate, on strided views (transposes cost nothing).

use gemm::Parallelism;

use super::MatmulKernels;
use crate::cpu::{Cpu, alloc, num_threads};
use crate::layout::Layout;
use crate::{Result, Storage, Tensor};

impl MatmulKernels for Cpu {
    fn matmul3(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout) -> Result<Tensor> {
        let (sa, sb) = (a.storage(), b.storage());
        let (data, shape) = matmul3(sa.host(), al, sb.host(), bl);
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

/// `dst = a @ b`, or `dst += a @ b` when `accumulate`; `threads` > 1 lets gemm split the work.
pub(crate) fn gemm(dst: MatMut<'_>, accumulate: bool, a: Mat<'_>, b: Mat<'_>, threads: usize) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(a.rows == m && b.rows == k && b.cols == n, "gemm: inner shapes checked by the caller");
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
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: every index the kernel touches lies inside the slices (checked above), `dst` is borrowed
    // mutably and so cannot alias `a` or `b`, and all strides are non-negative.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.offset),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Batched `[batch, m, k] @ [batch, k, n]` on any strides; returns row-major data and its shape.
fn matmul3(a: &[f32], al: &Layout, b: &[f32], bl: &Layout) -> (Vec<f32>, Vec<usize>) {
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
    for i in 0..batch {
        let (lhs, rhs) = (batch_mat(a, al, i), batch_mat(b, bl, i));
        let dst = MatMut { offset: i * m * n, ..MatMut::rows(&mut out, m, n) };
        gemm(dst, false, lhs, rhs, num_threads());
    }
    (out, vec![batch, m, n])
}

//! The GPU's matrix products through cuBLAS: row-major operands with any unit-stride layout, batched by strides.

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasSetMathMode, cublasStatus_t};
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, CudaView};

use super::MatmulKernels;
use crate::cuda::{Gpu, allow_tf32, slice, wrap};
use crate::layout::Layout;
use crate::ops::elementwise::ElementwiseKernels;
use crate::{Result, Tensor, TensorError};

impl MatmulKernels for Gpu {
    /// `c[b] = a[b] @ b[b]` for 3-D operands `[batch, m, k]` and `[batch, k, n]` (a batch stride of 0 broadcasts).
    fn matmul3(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout) -> Result<Tensor> {
        let g = self;
        let (batch, m, k, n) = (al.shape[0].max(bl.shape[0]), al.shape[1], al.shape[2], bl.shape[2]);
        let (a, al) = blas_ready(g, a, al)?;
        let (b, bl) = blas_ready(g, b, bl)?;
        let mut out = if k == 0 { g.zeros(batch * m * n)? } else { g.alloc::<f32>(batch * m * n)? };
        if batch * m * n > 0 && k > 0 {
            let (sa, sb) = (a.storage(), b.storage());
            let bs = |l: &Layout| if l.shape[0] == 1 { 0 } else { l.strides[0] };
            let ma = Mat {
                data: slice(&sa).slice(al.offset..),
                rs: al.strides[1],
                cs: al.strides[2],
                batch_stride: bs(&al),
            };
            let mb = Mat {
                data: slice(&sb).slice(bl.offset..),
                rs: bl.strides[1],
                cs: bl.strides[2],
                batch_stride: bs(&bl),
            };
            gemm(g, (batch, m, k, n), &ma, &mb, &mut out)?;
        }
        Ok(wrap(g, out, Layout::contiguous(&[batch, m, n])))
    }
}

/// One operand of a row-major product `[rows, cols]` as cuBLAS sees it: a column-major matrix with leading
/// dimension `ld`, transposed or not. `None` when neither dimension has unit stride.
fn operand(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(cublasOperation_t, i32)> {
    // Row-major (unit column stride): its column-major view is the transpose, which is what the
    // swapped product below wants, so no transpose flag.
    if cs == 1 || cols == 1 {
        let ld = if rows == 1 { cols.max(1) } else { rs.max(cols).max(1) };
        if rows == 1 || rs >= cols {
            return Some((cublasOperation_t::CUBLAS_OP_N, ld as i32));
        }
    }
    if rs == 1 || rows == 1 {
        let ld = if cols == 1 { rows.max(1) } else { cs.max(rows).max(1) };
        if cols == 1 || cs >= rows {
            return Some((cublasOperation_t::CUBLAS_OP_T, ld as i32));
        }
    }
    None
}

/// A matrix operand: its device buffer from `offset`, row and column strides, and batch stride.
pub(crate) struct Mat<'a> {
    pub(crate) data: CudaView<'a, f32>,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
    pub(crate) batch_stride: usize,
}

/// `out[b] = a[b] @ b[b]` for `batch` products of `[m, k] x [k, n]`, written row-major into `out` (batch
/// stride `m * n`). Row-major C = A B is column-major C^T = B^T A^T, so cuBLAS gets the operands swapped.
pub(crate) fn gemm(
    g: &Gpu,
    (batch, m, k, n): (usize, usize, usize, usize),
    a: &Mat<'_>,
    b: &Mat<'_>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    // cuBLAS runs in the current context; make it this GPU's on whichever thread calls.
    g.ctx.bind_to_thread().map_err(crate::cuda::err("matmul"))?;
    let bad = || TensorError::InvalidArgument { op: "matmul", msg: "operand without a unit stride".into() };
    let (op_a, lda) = operand(m, k, a.rs, a.cs).ok_or_else(bad)?;
    let (op_b, ldb) = operand(k, n, b.rs, b.cs).ok_or_else(bad)?;
    let gemm = GemmConfig {
        transa: op_b,
        transb: op_a,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: ldb,
        ldb: lda,
        beta: 0.0f32,
        ldc: n.max(1) as i32,
    };
    let mut blas = g.blas.lock().unwrap_or_else(|e| e.into_inner());
    let tf32 = allow_tf32();
    if blas.1 != tf32 {
        let mode = if tf32 { cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH } else { cublasMath_t::CUBLAS_DEFAULT_MATH };
        let status = unsafe { cublasSetMathMode(*blas.0.handle(), mode) };
        if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(TensorError::Cuda { op: "cublasSetMathMode", msg: format!("{status:?}") });
        }
        blas.1 = tf32;
    }
    let result = if batch == 1 {
        unsafe { blas.0.gemm(gemm, &b.data, &a.data, out) }
    } else {
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size: batch as i32,
            stride_a: b.batch_stride as i64,
            stride_b: a.batch_stride as i64,
            stride_c: (m * n) as i64,
        };
        unsafe { blas.0.gemm_strided_batched(cfg, &b.data, &a.data, out) }
    };
    result.map_err(|e| TensorError::Cuda { op: "matmul", msg: e.to_string() })
}

/// A copy of `x` when its last two dimensions have no unit stride, so that cuBLAS can read it.
fn blas_ready(g: &Gpu, x: &Tensor, l: &Layout) -> Result<(Tensor, Layout)> {
    let (r, c) = (l.shape[1], l.shape[2]);
    if operand(r, c, l.strides[1], l.strides[2]).is_some() {
        return Ok((x.clone(), l.clone()));
    }
    let copy = g.contiguous(&x.view_with(l.clone()))?;
    let cl = copy.layout().clone();
    Ok((copy, cl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_map_to_cublas_flags() {
        // Row-major [3, 4]: not transposed, ld 4.
        assert_eq!(operand(3, 4, 4, 1), Some((cublasOperation_t::CUBLAS_OP_N, 4)));
        // The transpose of a row-major [4, 3]: transposed, ld 3.
        assert_eq!(operand(3, 4, 1, 3), Some((cublasOperation_t::CUBLAS_OP_T, 3)));
        // A padded row-major view keeps its row stride as ld.
        assert_eq!(operand(3, 4, 10, 1), Some((cublasOperation_t::CUBLAS_OP_N, 10)));
        // Neither stride is 1.
        assert_eq!(operand(3, 4, 8, 2), None);
    }
}

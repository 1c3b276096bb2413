//! The GPU's matrix products through cuBLAS: row-major operands with any unit-stride layout, batched by strides.

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasSetMathMode, cublasStatus_t};
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, CudaView};

use super::MatmulKernels;
use crate::autocast::Precision;
use crate::cuda::strided::i32_of;
use crate::cuda::{Gpu, allow_tf32, slice, wrap};
use crate::layout::Layout;
use crate::ops::elementwise::ElementwiseKernels;
use crate::{Result, Tensor, TensorError};

impl MatmulKernels for Gpu {
    /// `c[b] = a[b] @ b[b]` for 3-D operands `[batch, m, k]` and `[batch, k, n]` (a batch stride of 0 broadcasts).
    fn matmul3(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, precision: Precision) -> Result<Tensor> {
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
            gemm(g, "matmul", (batch, m, k, n), &ma, &mb, &mut out, precision)?;
        }
        Ok(wrap(g, out, Layout::contiguous(&[batch, m, n])))
    }
}

/// One operand of a row-major product `[rows, cols]` as cuBLAS sees it: a column-major matrix with leading
/// dimension `ld`, transposed or not. `None` when neither dimension has unit stride.
fn operand(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(cublasOperation_t, usize)> {
    // Row-major (unit column stride): its column-major view is the transpose, which is what the
    // swapped product below wants, so no transpose flag.
    if cs == 1 || cols == 1 {
        let ld = if rows == 1 { cols.max(1) } else { rs.max(cols).max(1) };
        if rows == 1 || rs >= cols {
            return Some((cublasOperation_t::CUBLAS_OP_N, ld));
        }
    }
    if rs == 1 || rows == 1 {
        let ld = if cols == 1 { rows.max(1) } else { cs.max(rows).max(1) };
        if cols == 1 || cs >= rows {
            return Some((cublasOperation_t::CUBLAS_OP_T, ld));
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

/// The cuBLAS call for row-major `[m, k] x [k, n]` operands with row and column strides `a` and `b`: every size
/// and leading dimension checked into cuBLAS's 32-bit integers, an error that names `op` otherwise. Row-major
/// C = A B is column-major C^T = B^T A^T, so cuBLAS gets the operands swapped.
fn blas_config(
    op: &'static str,
    (m, k, n): (usize, usize, usize),
    a: (usize, usize),
    b: (usize, usize),
) -> Result<GemmConfig<f32>> {
    let bad = || TensorError::InvalidArgument { op, msg: "operand without a unit stride".into() };
    let (op_a, lda) = operand(m, k, a.0, a.1).ok_or_else(bad)?;
    let (op_b, ldb) = operand(k, n, b.0, b.1).ok_or_else(bad)?;
    Ok(GemmConfig {
        transa: op_b,
        transb: op_a,
        m: i32_of(op, "GEMM columns (n)", n)?,
        n: i32_of(op, "GEMM rows (m)", m)?,
        k: i32_of(op, "GEMM inner size (k)", k)?,
        alpha: 1.0f32,
        lda: i32_of(op, "GEMM leading dimension of the right operand", ldb)?,
        ldb: i32_of(op, "GEMM leading dimension of the left operand", lda)?,
        beta: 0.0f32,
        ldc: i32_of(op, "GEMM leading dimension of the output", n.max(1))?,
    })
}

/// `out[b] = a[b] @ b[b]` for `batch` products of `[m, k] x [k, n]`, written row-major into `out` (batch
/// stride `m * n`), in `precision`: bf16 is cuBLAS's `CUBLAS_COMPUTE_32F_FAST_16BF` on the f32 operands (rounded
/// to bf16 for the tensor cores, summed in f32); `op` names the caller in errors.
pub(crate) fn gemm(
    g: &Gpu,
    op: &'static str,
    (batch, m, k, n): (usize, usize, usize, usize),
    a: &Mat<'_>,
    b: &Mat<'_>,
    out: &mut CudaSlice<f32>,
    precision: Precision,
) -> Result<()> {
    let gemm = blas_config(op, (m, k, n), (a.rs, a.cs), (b.rs, b.cs))?;
    let batch_size = i32_of(op, "GEMM batch", batch)?;
    // cuBLAS runs in the current context; make it this GPU's on whichever thread calls.
    g.ctx.bind_to_thread().map_err(crate::cuda::err(op))?;
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
    let result = if precision == Precision::Bf16 {
        gemm_bf16(&g.stream, &blas.0, gemm, (batch_size, b.batch_stride, a.batch_stride, m * n), &b.data, &a.data, out)
    } else if batch == 1 {
        unsafe { blas.0.gemm(gemm, &b.data, &a.data, out) }
    } else {
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size,
            stride_a: b.batch_stride as i64,
            stride_b: a.batch_stride as i64,
            stride_c: (m * n) as i64,
        };
        unsafe { blas.0.gemm_strided_batched(cfg, &b.data, &a.data, out) }
    };
    result.map_err(|e| TensorError::Cuda { op, msg: e.to_string() })
}

/// `c = a @ b` in cuBLAS's column-major terms (`cfg` as for `Sgemm`) for `batch` products with batch strides
/// `(stride_a, stride_b, stride_c)`, on f32 operands with bf16 tensor-core products
/// (`cublasGemmStridedBatchedEx`, `CUBLAS_COMPUTE_32F_FAST_16BF`).
fn gemm_bf16(
    stream: &cudarc::driver::CudaStream,
    blas: &cudarc::cublas::CudaBlas,
    cfg: GemmConfig<f32>,
    (batch, stride_a, stride_b, stride_c): (i32, usize, usize, usize),
    a: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    c: &mut CudaSlice<f32>,
) -> std::result::Result<(), cudarc::cublas::result::CublasError> {
    use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType_t};
    use cudarc::driver::{DevicePtr, DevicePtrMut};
    let (pa, _ra) = a.device_ptr(stream);
    let (pb, _rb) = b.device_ptr(stream);
    let (pc, _rc) = c.device_ptr_mut(stream);
    let f32_ = cudaDataType_t::CUDA_R_32F;
    // SAFETY: the pointers are live device buffers of this stream, sized for the products by the caller (the
    // same sizes the f32 path hands cuBLAS); alpha and beta are host scalars that outlive the call.
    unsafe {
        cudarc::cublas::result::gemm_strided_batched_ex(
            *blas.handle(),
            cfg.transa,
            cfg.transb,
            cfg.m,
            cfg.n,
            cfg.k,
            (&cfg.alpha) as *const f32 as *const _,
            pa as *const _,
            f32_,
            cfg.lda,
            stride_a as i64,
            pb as *const _,
            f32_,
            cfg.ldb,
            stride_b as i64,
            (&cfg.beta) as *const f32 as *const _,
            pc as *mut _,
            f32_,
            cfg.ldc,
            stride_c as i64,
            batch,
            cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
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

    #[test]
    fn gemm_sizes_past_32_bits_are_errors() {
        let ok = blas_config("matmul", (3, 4, 5), (4, 1), (5, 1)).unwrap();
        assert_eq!((ok.m, ok.n, ok.k, ok.lda, ok.ldb, ok.ldc), (5, 3, 4, 5, 4, 5));
        // An im2col matrix of 2^31 rows (n * oh * ow), and a padded row stride past i32::MAX.
        let err = blas_config("conv2d", (1 << 31, 27, 8), (27, 1), (1, 27)).unwrap_err().to_string();
        assert!(err.starts_with("conv2d:") && err.contains("(m) = 2147483648"), "{err}");
        let err = blas_config("matmul", (2, 4, 5), (1 << 31, 1), (5, 1)).unwrap_err().to_string();
        assert!(err.starts_with("matmul:") && err.contains("left operand = 2147483648"), "{err}");
    }
}

//! `matmul`: matrix products of 2-D and batched 3-D tensors through GEMM, transposes as free views.

pub(crate) mod bf16;
pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use crate::autocast::{Precision, autocast, autocast_precision};
use crate::autograd::Reads;
use crate::backend;
use crate::layout::Layout;
use crate::{Result, Tensor, TensorError};

/// The batched matrix product each backend provides.
pub(crate) trait MatmulKernels {
    /// `c[b] = a[b] @ b[b]` for 3-D operands of shapes `[batch, m, k]` and `[batch, k, n]` (any strides; a batch
    /// stride of 0 broadcasts); the result is a row-major `[batch, m, n]`, its products in `precision`.
    fn matmul3(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, precision: Precision) -> Result<Tensor>;
}

/// `t` seen as 3-D `[batch, rows, cols]`; a matrix becomes a batch of one with batch stride 0, so it
/// broadcasts against any batch.
fn as_batched(t: &Tensor, batch: usize) -> Layout {
    let l = t.layout();
    if l.rank() == 2 {
        Layout {
            shape: vec![batch, l.shape[0], l.shape[1]],
            strides: vec![0, l.strides[0], l.strides[1]],
            offset: l.offset,
        }
    } else {
        l.clone()
    }
}

impl Tensor {
    /// The matrix product `self @ rhs` for `[m, k] @ [k, n]`, `[b, m, k] @ [b, k, n]`, or a batch
    /// against one matrix (`[b, m, k] @ [k, n]` and the reverse).
    /// d/da = g @ b^T, d/db = a^T @ g (summed over the batch where `b` was broadcast). Under
    /// [`autocast`](crate::autocast)`(Precision::Bf16)` the products, these two included, are bf16's.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    /// let b = Tensor::from_vec(vec![5.0, 6.0, 7.0, 8.0], &[2, 2]).unwrap();
    /// assert_eq!(a.matmul(&b).unwrap().to_vec(), vec![19.0, 22.0, 43.0, 50.0]);
    /// ```
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let mismatch =
            || TensorError::ShapeMismatch { op: "matmul", lhs: self.shape().to_vec(), rhs: rhs.shape().to_vec() };
        let (ra, rb) = (self.rank(), rhs.rank());
        if !(2..=3).contains(&ra) || !(2..=3).contains(&rb) {
            return Err(mismatch());
        }
        let batch = if ra == 3 {
            self.shape()[0]
        } else if rb == 3 {
            rhs.shape()[0]
        } else {
            1
        };
        let (al, bl) = (as_batched(self, batch), as_batched(rhs, batch));
        if al.shape[0] != bl.shape[0] || al.shape[2] != bl.shape[1] {
            return Err(mismatch());
        }
        let precision = autocast_precision();
        let out = backend::on_all("matmul", self, &[rhs])?.matmul3(self, &al, rhs, &bl, precision)?;
        let out = if ra == 2 && rb == 2 { out.reshape(&out.shape()[1..])? } else { out };
        Ok(Tensor::record_reading(out, "matmul", &[self, rhs], Reads::Inputs, move |g, _, x| {
            let (a, b) = (&x[0], &x[1]);
            // The backward's products run in the forward's precision, wherever `backward()` is called.
            let _precision = autocast(precision);
            let ga = if a.requires_grad() { Some(g.matmul(&b.transpose(-1, -2)?)?.sum_to(a.shape())?) } else { None };
            let gb = if b.requires_grad() { Some(a.transpose(-1, -2)?.matmul(g)?.sum_to(b.shape())?) } else { None };
            Ok(vec![ga, gb])
        }))
    }
}

//! Reductions: `sum`, `mean`, `max` over any dimensions, `logsumexp`, `argmax`, and `sum_to`.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::Reads;
use crate::backend;
use crate::layout::normalize_dim;
use crate::{Result, Tensor, TensorError};

/// Reductions over chosen dimensions; the discriminant is the kernel's op code in `reduce.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ReduceOp {
    /// The sum.
    Sum = 0,
    /// The largest value.
    Max = 1,
}

/// The reduction kernel each backend provides.
pub(crate) trait ReduceKernels {
    /// Reduces over the dimensions flagged in `mask`, keeping them with size 1; the result is row-major.
    fn reduce(&self, x: &Tensor, mask: &[bool], op: ReduceOp) -> Result<Tensor>;
}

/// Reduces `x` over the dimensions flagged in `mask` on its device.
fn reduce(x: &Tensor, mask: &[bool], op: ReduceOp) -> Result<Tensor> {
    backend::on(x)?.reduce(x, mask, op)
}

/// The index of the first largest value in each row of `cols` values.
fn argmax_rows(x: &[f32], cols: usize) -> Vec<u32> {
    x.chunks(cols)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

impl Tensor {
    /// Flags the dimensions listed in `dims` (negative counts from the end); empty `dims` means all.
    fn reduce_mask(&self, op: &'static str, dims: &[isize]) -> Result<Vec<bool>> {
        let mut mask = vec![dims.is_empty(); self.rank()];
        for &d in dims {
            mask[normalize_dim(op, d, self.rank())?] = true;
        }
        Ok(mask)
    }

    /// The shape without the reduced dimensions.
    fn squeezed(&self, mask: &[bool]) -> Vec<usize> {
        self.shape().iter().zip(mask).filter(|(_, r)| !**r).map(|(&n, _)| n).collect()
    }

    /// Sums over `dims` (all dimensions when empty); `keepdim` keeps them with size 1.
    /// The gradient is the output gradient broadcast back over the summed dimensions.
    ///
    /// ```
    /// let t = tiny_tensor::Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    /// assert_eq!(t.sum(&[1], false).unwrap().to_vec(), vec![6.0, 15.0]);
    /// assert_eq!(t.sum(&[0], true).unwrap().shape(), &[1, 3]);
    /// ```
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let mask = self.reduce_mask("sum", dims)?;
        let kept = reduce(self, &mask, ReduceOp::Sum)?;
        let kept_shape = kept.shape().to_vec();
        let out = if keepdim { kept } else { kept.reshape(&self.squeezed(&mask))? };
        Ok(Tensor::record_reading(out, "sum", &[self], Reads::Nothing, move |g, _, x| {
            Ok(vec![Some(g.reshape(&kept_shape)?.expand(x[0].shape())?)])
        }))
    }

    /// The sum of all elements, as a shape-`[]` scalar.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }

    /// The mean over `dims` (all when empty). d/dx = 1/count.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let mask = self.reduce_mask("mean", dims)?;
        let count: usize = self.shape().iter().zip(&mask).filter(|(_, r)| **r).map(|(&n, _)| n).product();
        self.sum(dims, keepdim)?.mul_scalar(1.0 / count.max(1) as f32)
    }

    /// The mean of all elements, as a shape-`[]` scalar.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    /// The largest value over `dims` (all when empty). The gradient goes to the maximal elements,
    /// shared equally between ties.
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let mask = self.reduce_mask("max", dims)?;
        if self.numel() == 0 {
            return Err(TensorError::InvalidArgument {
                op: "max",
                msg: "cannot take the max of an empty tensor".into(),
            });
        }
        let kept = reduce(self, &mask, ReduceOp::Max)?;
        let out = if keepdim { kept.clone() } else { kept.reshape(&self.squeezed(&mask))? };
        Ok(Tensor::record(out, "max", &[self], move |g, _, x| {
            let hit = x[0].eq(&kept)?;
            let share = hit.div(&hit.sum_by_mask(&mask)?)?;
            Ok(vec![Some(share.mul(&g.reshape(kept.shape())?)?)])
        }))
    }

    fn sum_by_mask(&self, mask: &[bool]) -> Result<Tensor> {
        reduce(self, mask, ReduceOp::Sum)
    }

    /// `log(sum(exp(x)))` over `dims`, computed as `m + log(sum(exp(x - m)))` with `m` the max, so that
    /// large logits (1e4) stay finite. Its gradient is the softmax.
    ///
    /// ```
    /// let t = tiny_tensor::Tensor::from_vec(vec![1e4, 1e4], &[1, 2]).unwrap();
    /// let lse = t.logsumexp(&[-1], false).unwrap().item().unwrap();
    /// assert!((lse - (1e4 + 2f32.ln())).abs() < 1e-2);
    /// ```
    pub fn logsumexp(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let m = self.max(dims, true)?.detach();
        let lse = self.sub(&m)?.exp()?.sum(dims, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(lse)
        } else {
            let mask = self.reduce_mask("logsumexp", dims)?;
            lse.reshape(&self.squeezed(&mask))
        }
    }

    /// The index of the largest value along `dim` (the first one on ties), for every other position:
    /// shape `[4, 10]` with `dim = 1` gives 4 indices. Not differentiable.
    pub fn argmax(&self, dim: isize) -> Result<Vec<u32>> {
        let d = normalize_dim("argmax", dim, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).filter(|&i| i != d).collect();
        perm.push(d);
        // Computed on the host: the result is a host vector anyway.
        let rows = self.permute(&perm)?.try_to_vec()?;
        Ok(argmax_rows(&rows, self.shape()[d].max(1)))
    }

    /// Sums this tensor down to `shape`, the adjoint of broadcasting `shape` up to `self.shape()`: the
    /// one helper that every broadcasting op's backward uses.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let err = || TensorError::ShapeMismatch { op: "sum_to", lhs: self.shape().to_vec(), rhs: shape.to_vec() };
        let lead = self.rank().checked_sub(shape.len()).ok_or_else(err)?;
        let mut dims = Vec::new();
        for (d, &n) in self.shape().iter().enumerate() {
            if d < lead || (shape[d - lead] == 1 && n != 1) {
                dims.push(d as isize);
            } else if shape[d - lead] != n {
                return Err(err());
            }
        }
        self.sum(&dims, true)?.reshape(shape)
    }
}

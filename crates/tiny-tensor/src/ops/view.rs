//! Shape ops: `reshape`, `permute`, `transpose`, `narrow`, `expand`, `contiguous`, `cat`, `stack`.
//! Views share storage with their source; only `contiguous`, `cat` and non-contiguous `reshape` copy.

use crate::autograd::Reads;
use crate::layout::{Layout, normalize_dim};
use crate::{Result, Tensor, TensorError};

impl Tensor {
    /// The same elements in a new shape with the same count (a view when contiguous, else a copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(TensorError::ShapeMismatch { op: "reshape", lhs: self.shape().to_vec(), rhs: shape.to_vec() });
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let src = if self.layout().is_contiguous() { self.clone() } else { self.contiguous()? };
        let out = src.view_with(Layout { offset: src.layout().offset, ..Layout::contiguous(shape) });
        Ok(Tensor::record_reading(out, "reshape", &[&src], Reads::Nothing, |g, _, x| {
            Ok(vec![Some(g.reshape(x[0].shape())?)])
        }))
    }

    /// Flattens dimensions `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let (s, e) = (normalize_dim("flatten", start, self.rank())?, normalize_dim("flatten", end, self.rank())?);
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e.max(s)].iter().product());
        shape.extend_from_slice(&self.shape()[e.max(s) + 1..]);
        self.reshape(&shape)
    }

    /// Reorders dimensions without copying: `out.shape()[i] == self.shape()[perm[i]]`. The chapter's
    /// `permute(0, 3, 1, 2)` turns NHWC images into NCHW.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let out = self.view_with(self.layout().permute(perm)?);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(Tensor::record_reading(out, "permute", &[self], Reads::Nothing, move |g, _, _| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Swaps two dimensions (a view).
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let (a, b) = (normalize_dim("transpose", d0, self.rank())?, normalize_dim("transpose", d1, self.rank())?);
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The transpose of a matrix (a view).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(TensorError::InvalidArgument {
                op: "t",
                msg: format!("needs a matrix, got shape {:?}", self.shape()),
            });
        }
        self.transpose(0, 1)
    }

    /// The slice `start..start + len` along `dim` (a view). Its gradient is zero outside the slice.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = normalize_dim("narrow", dim, self.rank())?;
        if start + len > self.shape()[d] {
            return Err(TensorError::IndexOutOfRange { op: "narrow", index: start + len, size: self.shape()[d] });
        }
        let mut layout = self.layout().clone();
        layout.offset += start * layout.strides[d];
        layout.shape[d] = len;
        let out = self.view_with(layout);
        Ok(Tensor::record_reading(out, "narrow", &[self], Reads::Nothing, move |g, _, x| {
            let full = x[0].zeros_like()?;
            full.narrow(d as isize, start, len)?.assign(g)?;
            Ok(vec![Some(full)])
        }))
    }

    /// This tensor broadcast to `shape` without copying (stride 0 along repeated dimensions).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let out = self.view_with(self.layout().broadcast_to(shape)?);
        Ok(Tensor::record_reading(out, "expand", &[self], Reads::Nothing, |g, _, x| {
            Ok(vec![Some(g.sum_to(x[0].shape())?)])
        }))
    }

    /// Inserts a dimension of size 1 at `dim` (a view).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        self.reshape(&shape)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return Err(TensorError::InvalidArgument {
                op: "squeeze",
                msg: format!("dimension {d} of {:?} is not 1", self.shape()),
            });
        }
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        self.reshape(&shape)
    }

    /// This tensor in row-major order: itself when it already is, else a recorded copy.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.layout().is_contiguous() {
            return Ok(self.clone());
        }
        let out = crate::ops::elementwise::contiguous(self)?;
        Ok(Tensor::record_reading(out, "contiguous", &[self], Reads::Nothing, |g, _, _| Ok(vec![Some(g.clone())])))
    }

    /// This NCHW tensor with channels-last memory (NHWC order behind the same indices), PyTorch's
    /// `torch.channels_last` format; free when it already is laid out that way.
    pub fn to_channels_last(&self) -> Result<Tensor> {
        if self.rank() != 4 {
            return Err(TensorError::InvalidArgument {
                op: "to_channels_last",
                msg: format!("needs NCHW, got {:?}", self.shape()),
            });
        }
        let nhwc = self.permute(&[0, 2, 3, 1])?;
        if nhwc.layout().is_contiguous() {
            return Ok(self.clone());
        }
        nhwc.contiguous()?.permute(&[0, 3, 1, 2])
    }

    /// A fresh row-major copy that records no graph.
    pub(crate) fn contiguous_copy(&self) -> Result<Tensor> {
        crate::ops::elementwise::contiguous(self)
    }

    /// Joins tensors along `dim`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first =
            tensors.first().ok_or_else(|| TensorError::InvalidArgument { op: "cat", msg: "no tensors".into() })?;
        let d = normalize_dim("cat", dim, first.rank())?;
        let mut shape = first.shape().to_vec();
        shape[d] = 0;
        for t in tensors {
            let same = t.rank() == first.rank() && (0..t.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !same {
                return Err(TensorError::ShapeMismatch {
                    op: "cat",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
            shape[d] += t.shape()[d];
        }
        let out = Tensor::zeros(&shape).to_device(first.device())?;
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut start = 0;
        for t in tensors {
            out.narrow(d as isize, start, t.shape()[d])?.assign(t)?;
            sizes.push(t.shape()[d]);
            start += t.shape()[d];
        }
        Ok(Tensor::record_reading(out, "cat", tensors, Reads::Nothing, move |g, _, x| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(x.len());
            for (t, &n) in x.iter().zip(&sizes) {
                grads.push(if t.requires_grad() {
                    Some(g.narrow(d as isize, start, n)?.contiguous_copy()?)
                } else {
                    None
                });
                start += n;
            }
            Ok(grads)
        }))
    }

    /// Stacks equally shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first =
            tensors.first().ok_or_else(|| TensorError::InvalidArgument { op: "stack", msg: "no tensors".into() })?;
        let d = normalize_dim("stack", dim, first.rank() + 1)? as isize;
        let expanded = tensors.iter().map(|t| t.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&expanded.iter().collect::<Vec<_>>(), d)
    }
}

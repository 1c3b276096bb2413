//! Integer indexing: `index_select`, the chapter's `pick` (`x[i, target[i]]`), and `one_hot`.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::Reads;
use crate::backend;
use crate::layout::format::row_major;
use crate::layout::normalize_dim;
use crate::{Result, Tensor, TensorError};

/// The gather and scatter kernels each backend provides, over a row-major `[outer, size, inner]` view.
pub(crate) trait IndexKernels {
    /// `out[o, i, :] = x[o, idx[i], :]`, shape `[outer, idx.len(), inner]`.
    fn index_select(&self, x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor>;
    /// The adjoint of `index_select`: `out[o, idx[i], :] += g[o, i, :]` into zeros of `[outer, size, inner]`.
    fn index_add(&self, g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor>;
}

impl Tensor {
    /// The slices `idx[0], idx[1], ..` along `dim`, in that order (repeats allowed), like PyTorch's
    /// `index_select`. The gradient adds each output slice back onto the slice it came from.
    pub fn index_select(&self, dim: isize, idx: &[u32]) -> Result<Tensor> {
        let d = normalize_dim("index_select", dim, self.rank())?;
        let size = self.shape()[d];
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= size) {
            return Err(TensorError::IndexOutOfRange { op: "index_select", index: bad as usize, size });
        }
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product();
        let mut shape = self.shape().to_vec();
        shape[d] = idx.len();
        let out = backend::on(self)?.index_select(&row_major(self)?, outer, size, inner, idx)?.reshape(&shape)?;
        let idx = idx.to_vec();
        Ok(Tensor::record_reading(out, "index_select", &[self], Reads::Nothing, move |g, _, x| {
            Ok(vec![Some(backend::on(g)?.index_add(&row_major(g)?, outer, size, inner, &idx)?.reshape(x[0].shape())?)])
        }))
    }

    /// For a `[n, c]` tensor, the `n` values `self[i, targets[i]]`: the chapter's
    /// `input[range(target.shape[0]), target]` in `nll`.
    ///
    /// ```
    /// let x = tiny_tensor::Tensor::from_vec(vec![0.1, 0.9, 0.7, 0.3], &[2, 2]).unwrap();
    /// assert_eq!(x.pick(&[1, 0]).unwrap().to_vec(), vec![0.9, 0.7]);
    /// ```
    pub fn pick(&self, targets: &[u32]) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 2 || s[0] != targets.len() {
            return Err(TensorError::ShapeMismatch { op: "pick", lhs: s.to_vec(), rhs: vec![targets.len()] });
        }
        let c = s[1];
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= c) {
            return Err(TensorError::IndexOutOfRange { op: "pick", index: bad as usize, size: c });
        }
        let flat: Vec<u32> = targets.iter().enumerate().map(|(i, &t)| (i * c) as u32 + t).collect();
        self.reshape(&[s[0] * c])?.index_select(0, &flat)
    }

    /// A `[targets.len(), classes]` tensor with 1.0 at `[i, targets[i]]` and 0.0 elsewhere.
    pub fn one_hot(targets: &[u32], classes: usize) -> Result<Tensor> {
        let mut data = vec![0.0; targets.len() * classes];
        for (i, &t) in targets.iter().enumerate() {
            if t as usize >= classes {
                return Err(TensorError::IndexOutOfRange { op: "one_hot", index: t as usize, size: classes });
            }
            data[i * classes + t as usize] = 1.0;
        }
        Tensor::from_vec(data, &[targets.len(), classes])
    }
}

//! `Layout`: shape, strides and offset of a view into a storage buffer, and the broadcasting rules.

pub(crate) mod format;

use crate::{Result, TensorError};

/// How a tensor's logical elements map to its storage: element `[i0, i1, ..]` lives at
/// `offset + i0 * strides[0] + i1 * strides[1] + ..`. Strides are in elements; a stride of 0 repeats
/// one element along a broadcast dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The size of each dimension.
    pub shape: Vec<usize>,
    /// The distance in storage between neighbours along each dimension.
    pub strides: Vec<usize>,
    /// The position of element `[0, 0, ..]` in storage.
    pub offset: usize,
}

/// The row-major (C order) strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

impl Layout {
    /// A row-major layout of `shape` starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Whether `other` has this shape and puts each element at the same distance from its offset (strides
    /// of dimensions of size 1 are ignored): the two can be walked as flat runs of memory side by side.
    pub fn same_memory_order(&self, other: &Layout) -> bool {
        self.shape == other.shape
            && self.shape.iter().zip(self.strides.iter().zip(&other.strides)).all(|(&n, (a, b))| n == 1 || a == b)
    }

    /// Whether the elements sit in row-major order with no gaps (dimensions of size 1 are ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 {
                if s != expected {
                    return false;
                }
                expected *= n;
            }
        }
        true
    }

    /// The dimensions ordered from the largest stride to the smallest (ties keep their logical order).
    pub fn memory_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rank()).collect();
        order.sort_by(|&a, &b| self.strides[b].cmp(&self.strides[a]));
        order
    }

    /// Whether the elements fill `offset..offset + numel` exactly once in some dimension order: a permuted
    /// contiguous tensor (such as channels-last NCHW) is dense; a broadcast or a slice of a row is not.
    pub fn is_dense(&self) -> bool {
        let mut expected = 1;
        for d in self.memory_order().into_iter().rev() {
            if self.shape[d] != 1 {
                if self.strides[d] != expected {
                    return false;
                }
                expected *= self.shape[d];
            }
        }
        true
    }

    /// Strides that lay out this shape densely in the same dimension order as `self` (row-major when
    /// `self` is not dense), so that elementwise results keep their inputs' memory format.
    pub fn dense_strides_like(&self) -> Vec<usize> {
        if !self.is_dense() {
            return contiguous_strides(&self.shape);
        }
        let mut strides = vec![0; self.rank()];
        let mut acc = 1;
        for d in self.memory_order().into_iter().rev() {
            strides[d] = acc;
            acc *= self.shape[d];
        }
        strides
    }

    /// The same elements seen through permuted dimensions: `new.shape[i] == self.shape[perm[i]]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
            return Err(TensorError::InvalidArgument {
                op: "permute",
                msg: format!("{perm:?} is not a permutation of the {rank} dimensions of {:?}", self.shape),
            });
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// This layout seen as `shape` under broadcasting: new leading dimensions and dimensions of size 1
    /// get stride 0.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        let err = || TensorError::ShapeMismatch { op: "broadcast_to", lhs: self.shape.clone(), rhs: shape.to_vec() };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for d in 0..self.rank() {
            let (have, want) = (self.shape[d], shape[lead + d]);
            strides[lead + d] = if have == want {
                self.strides[d]
            } else if have == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }
}

/// The shape that two shapes broadcast to under NumPy's rules, or a `ShapeMismatch` naming `op`.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(TensorError::ShapeMismatch { op, lhs: a.to_vec(), rhs: b.to_vec() }),
        };
    }
    Ok(out)
}

/// Turns a possibly negative dimension index into `0..rank`, or a `DimOutOfRange` naming `op`.
pub fn normalize_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(TensorError::DimOutOfRange { op, dim, rank });
    }
    Ok(d as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_is_dense_but_not_contiguous() {
        let nhwc = Layout::contiguous(&[2, 4, 5, 3]);
        let nchw = nhwc.permute(&[0, 3, 1, 2]).unwrap();
        assert_eq!(nchw.shape, vec![2, 3, 4, 5]);
        assert!(nchw.is_dense());
        assert!(!nchw.is_contiguous());
        assert_eq!(nchw.dense_strides_like(), nchw.strides);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes("t", &[4, 1, 3], &[5, 1]).unwrap(), vec![4, 5, 3]);
        assert!(broadcast_shapes("t", &[2, 3], &[4, 3]).is_err());
        let l = Layout::contiguous(&[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
        assert_eq!(l.strides, vec![0, 1, 0]);
        assert!(!l.is_dense());
    }

    #[test]
    fn negative_dims_count_from_the_end() {
        assert_eq!(normalize_dim("t", -1, 3).unwrap(), 2);
        assert!(normalize_dim("t", 3, 3).is_err());
    }
}

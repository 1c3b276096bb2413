//! Kernel arguments for strided operands: a shape and per-operand strides, with mergeable dimensions merged.

use cudarc::driver::DeviceRepr;

use crate::{Result, TensorError};

/// The most dimensions a kernel indexes after merging (see `kernels/common.cuh`).
const MAX_DIMS: usize = 8;

/// `struct Shape` of `common.cuh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KShape {
    rank: i64,
    dims: [i64; MAX_DIMS],
}

/// `struct Strides` of `common.cuh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KStrides {
    offset: i64,
    s: [i64; MAX_DIMS],
}

// SAFETY: both are plain `#[repr(C)]` structs of integers laid out as their C counterparts.
unsafe impl DeviceRepr for KShape {}
unsafe impl DeviceRepr for KStrides {}

/// Kernel arguments for `K` operands that walk the same logical `shape` with their own strides and offsets.
///
/// With `reorder`, dimensions are first sorted by the first operand's strides (largest first), which is
/// valid for elementwise work where visiting order does not matter; then every pair of neighbouring
/// dimensions that is contiguous in all operands is merged and size-1 dimensions are dropped, so that a
/// dense tensor becomes one dimension and the kernel's index arithmetic stays short.
pub(crate) fn plan<const K: usize>(
    shape: &[usize],
    strides: [&[usize]; K],
    offsets: [usize; K],
    reorder: bool,
) -> Result<(KShape, [KStrides; K])> {
    let mut order: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    if reorder {
        order.sort_by(|&a, &b| strides[0][b].cmp(&strides[0][a]));
    }
    let mut dims: Vec<usize> = Vec::with_capacity(order.len());
    let mut st: [Vec<usize>; K] = std::array::from_fn(|_| Vec::with_capacity(order.len()));
    for d in order {
        let mergeable = !dims.is_empty() && (0..K).all(|k| st[k][st[k].len() - 1] == strides[k][d] * shape[d]);
        if mergeable {
            *dims.last_mut().expect("non-empty") *= shape[d];
            for k in 0..K {
                *st[k].last_mut().expect("non-empty") = strides[k][d];
            }
        } else {
            dims.push(shape[d]);
            for k in 0..K {
                st[k].push(strides[k][d]);
            }
        }
    }
    if dims.len() > MAX_DIMS {
        return Err(TensorError::InvalidArgument {
            op: "cuda",
            msg: format!(
                "shape {shape:?} needs {} strided dimensions; CUDA kernels take at most {MAX_DIMS}",
                dims.len()
            ),
        });
    }
    let mut kshape = KShape { rank: dims.len() as i64, dims: [1; MAX_DIMS] };
    for (i, &d) in dims.iter().enumerate() {
        kshape.dims[i] = d as i64;
    }
    let kstrides = std::array::from_fn(|k| {
        let mut s = KStrides { offset: offsets[k] as i64, s: [0; MAX_DIMS] };
        for (i, &v) in st[k].iter().enumerate() {
            s.s[i] = v as i64;
        }
        s
    });
    Ok((kshape, kstrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_operands_merge_into_one_dimension() {
        // NCHW shape with channels-last strides, in both operands: one run of 2*3*4*5 elements.
        let (shape, [a, b]) = plan(&[2, 3, 4, 5], [&[60, 1, 15, 3], &[60, 1, 15, 3]], [0, 7], true).unwrap();
        assert_eq!(shape.rank, 1);
        assert_eq!(shape.dims[0], 120);
        assert_eq!((a.s[0], b.s[0], b.offset), (1, 1, 7));
    }

    #[test]
    fn broadcast_dimensions_stay_apart() {
        // [4, 3] + a row broadcast along dim 0.
        let (shape, [_, b]) = plan(&[4, 3], [&[3, 1], &[0, 1]], [0, 0], true).unwrap();
        assert_eq!(shape.rank, 2);
        assert_eq!(&b.s[..2], &[0, 1]);
    }

    #[test]
    fn without_reordering_the_order_is_kept() {
        let (shape, [x]) = plan(&[3, 2], [&[1, 3]], [0], false).unwrap();
        assert_eq!(&shape.dims[..2], &[3, 2]);
        assert_eq!(&x.s[..2], &[1, 3]);
    }
}

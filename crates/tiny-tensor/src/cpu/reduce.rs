//! Reductions (sum, max) over any set of dimensions of a strided tensor.

use super::strided::for_each_run;
use crate::backend::ReduceOp;
use crate::layout::{Layout, contiguous_strides};

/// Reduces the dimensions flagged in `reduce`; returns row-major data and the keepdim shape.
///
/// The input is walked in its own memory order; the output index ignores reduced dimensions (stride 0),
/// so one pass serves every combination of reduced dimensions and layouts.
pub(crate) fn reduce(x: &[f32], l: &Layout, reduce: &[bool], op: ReduceOp) -> (Vec<f32>, Vec<usize>) {
    let shape: Vec<usize> = l.shape.iter().zip(reduce).map(|(&n, &r)| if r { 1 } else { n }).collect();
    let mut ostrides = contiguous_strides(&shape);
    for (s, &r) in ostrides.iter_mut().zip(reduce) {
        if r {
            *s = 0;
        }
    }
    let n: usize = shape.iter().product();
    let (init, f): (f32, fn(f32, f32) -> f32) = match op {
        ReduceOp::Sum => (0.0, |a, b| a + b),
        ReduceOp::Max => (f32::NEG_INFINITY, f32::max),
    };
    let mut out = vec![init; n];
    for_each_run(&l.shape, [&l.strides, &ostrides], [l.offset, 0], |len, [i, o], [si, so]| {
        if so == 0 {
            // A run that folds into one output: accumulate sums in f64 to keep long reductions exact.
            out[o] = match op {
                ReduceOp::Sum if si == 1 => out[o] + x[i..i + len].iter().map(|&v| v as f64).sum::<f64>() as f32,
                ReduceOp::Sum => out[o] + (0..len).map(|k| x[i + k * si] as f64).sum::<f64>() as f32,
                ReduceOp::Max => (0..len).fold(out[o], |acc, k| acc.max(x[i + k * si])),
            };
        } else {
            for k in 0..len {
                out[o + k * so] = f(out[o + k * so], x[i + k * si]);
            }
        }
    });
    (out, shape)
}

//! The CPU's reductions (sum, max) over any set of dimensions of a strided tensor.

use super::{ReduceKernels, ReduceOp};
use crate::cpu::strided::for_each_run;
use crate::cpu::{Cpu, alloc};
use crate::layout::{Layout, contiguous_strides};
use crate::{Result, Storage, Tensor};

impl ReduceKernels for Cpu {
    fn reduce(&self, x: &Tensor, mask: &[bool], op: ReduceOp) -> Result<Tensor> {
        let (data, shape) = reduce(x.storage().host(), x.layout(), mask, op);
        Ok(Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(&shape)))
    }
}

/// Reduces the dimensions flagged in `reduce`; returns row-major data and the keepdim shape.
///
/// The input is walked in its own memory order; the output index ignores reduced dimensions (stride 0),
/// so one pass serves every combination of reduced dimensions and layouts.
fn reduce(x: &[f32], l: &Layout, reduce: &[bool], op: ReduceOp) -> (Vec<f32>, Vec<usize>) {
    let shape: Vec<usize> = l.shape.iter().zip(reduce).map(|(&n, &r)| if r { 1 } else { n }).collect();
    let mut ostrides = contiguous_strides(&shape);
    for (s, &r) in ostrides.iter_mut().zip(reduce) {
        if r {
            *s = 0;
        }
    }
    let n: usize = shape.iter().product();
    let out = match op {
        ReduceOp::Sum => fold(x, l, &ostrides, alloc::take_filled(n, 0.0), |a, b| a + b, true),
        ReduceOp::Max => fold(x, l, &ostrides, alloc::take_filled(n, f32::NEG_INFINITY), f32::max, false),
    };
    (out, shape)
}

/// Folds every element of `x` into `out` at its output position (`ostrides` is 0 along reduced
/// dimensions). Generic over `f` so that each reduction's inner loop is compiled, and vectorised, on
/// its own. With `widen`, a run that folds into a single output is summed in f64 to keep long
/// reductions exact.
fn fold(
    x: &[f32],
    l: &Layout,
    ostrides: &[usize],
    mut out: Vec<f32>,
    f: impl Fn(f32, f32) -> f32,
    widen: bool,
) -> Vec<f32> {
    for_each_run(&l.shape, [&l.strides, ostrides], [l.offset, 0], |len, [i, o], [si, so]| {
        if so == 0 {
            out[o] = if widen {
                let s: f64 = if si == 1 {
                    x[i..i + len].iter().map(|&v| v as f64).sum()
                } else {
                    (0..len).map(|k| x[i + k * si] as f64).sum()
                };
                out[o] + s as f32
            } else {
                (0..len).fold(out[o], |acc, k| f(acc, x[i + k * si]))
            };
        } else if so == 1 && si == 1 {
            out[o..o + len].iter_mut().zip(&x[i..i + len]).for_each(|(a, &b)| *a = f(*a, b));
        } else {
            for k in 0..len {
                out[o + k * so] = f(out[o + k * so], x[i + k * si]);
            }
        }
    });
    out
}

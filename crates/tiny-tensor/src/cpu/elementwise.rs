//! Elementwise CPU kernels: unary maps, broadcast binary maps, strided copies and in-place updates.

use super::alloc;
use super::strided::for_each_run;
use crate::SgdStep;
use crate::backend::{BinaryOp, UnaryOp};
use crate::layout::{Layout, contiguous_strides};

/// Applies `op` to every element. A dense input (any dimension order) is mapped straight over its
/// storage and keeps its strides; anything else is gathered into row-major order.
pub(crate) fn unary(x: &[f32], l: &Layout, op: UnaryOp) -> (Vec<f32>, Layout) {
    match op {
        UnaryOp::Neg => map(x, l, |v| -v),
        UnaryOp::Exp => map(x, l, f32::exp),
        UnaryOp::Log => map(x, l, f32::ln),
        UnaryOp::Relu => map(x, l, |v| v.max(0.0)),
        UnaryOp::Sqrt => map(x, l, f32::sqrt),
        UnaryOp::Powf(1.0) => map(x, l, |v| v),
        UnaryOp::Powf(2.0) => map(x, l, |v| v * v),
        UnaryOp::Powf(-1.0) => map(x, l, |v| 1.0 / v),
        UnaryOp::Powf(0.5) => map(x, l, f32::sqrt),
        UnaryOp::Powf(p) => map(x, l, |v| v.powf(p)),
        UnaryOp::Affine { mul, add } => map(x, l, |v| v * mul + add),
    }
}

fn map(x: &[f32], l: &Layout, f: impl Fn(f32) -> f32) -> (Vec<f32>, Layout) {
    let n = l.numel();
    if l.is_dense() {
        let out = alloc::collect(n, x[l.offset..l.offset + n].iter().map(|&v| f(v)));
        return (out, Layout { shape: l.shape.clone(), strides: l.strides.clone(), offset: 0 });
    }
    let strides = contiguous_strides(&l.shape);
    let mut out = alloc::take(n);
    for_each_run(&l.shape, [&strides, &l.strides], [0, l.offset], |len, [o, i], [_, si]| {
        for (j, y) in out[o..o + len].iter_mut().enumerate() {
            *y = f(x[i + j * si]);
        }
    });
    (out, Layout::contiguous(&l.shape))
}

/// Combines `a` and `b` (already broadcast to one shape) with `op`. The result takes the memory
/// order of whichever operand is dense, so channels-last activations stay channels-last.
pub(crate) fn binary(a: &[f32], al: &Layout, b: &[f32], bl: &Layout, op: BinaryOp) -> (Vec<f32>, Layout) {
    match op {
        BinaryOp::Add => zip(a, al, b, bl, |x, y| x + y),
        BinaryOp::Sub => zip(a, al, b, bl, |x, y| x - y),
        BinaryOp::Mul => zip(a, al, b, bl, |x, y| x * y),
        BinaryOp::Div => zip(a, al, b, bl, |x, y| x / y),
        BinaryOp::Eq => zip(a, al, b, bl, |x, y| f32::from(x == y)),
        BinaryOp::Gt => zip(a, al, b, bl, |x, y| f32::from(x > y)),
        BinaryOp::ReluGrad => zip(a, al, b, bl, |g, x| if x > 0.0 { g } else { 0.0 }),
    }
}

fn zip(a: &[f32], al: &Layout, b: &[f32], bl: &Layout, f: impl Fn(f32, f32) -> f32) -> (Vec<f32>, Layout) {
    let n = al.numel();
    if al.is_dense() && bl.is_dense() && al.strides == bl.strides {
        let (a, b) = (&a[al.offset..al.offset + n], &b[bl.offset..bl.offset + n]);
        let out = alloc::collect(n, a.iter().zip(b).map(|(&x, &y)| f(x, y)));
        return (out, Layout { shape: al.shape.clone(), strides: al.strides.clone(), offset: 0 });
    }
    let strides = if al.is_dense() { al.dense_strides_like() } else { bl.dense_strides_like() };
    let mut out = alloc::take(n);
    for_each_run(
        &al.shape,
        [&strides, &al.strides, &bl.strides],
        [0, al.offset, bl.offset],
        |len, [o, i, j], [_, si, sj]| {
            let out = &mut out[o..o + len];
            match (si, sj) {
                (1, 1) => out.iter_mut().zip(&a[i..i + len]).zip(&b[j..j + len]).for_each(|((y, &x), &z)| *y = f(x, z)),
                (1, 0) => out.iter_mut().zip(&a[i..i + len]).for_each(|(y, &x)| *y = f(x, b[j])),
                (0, 1) => out.iter_mut().zip(&b[j..j + len]).for_each(|(y, &z)| *y = f(a[i], z)),
                _ => out.iter_mut().enumerate().for_each(|(k, y)| *y = f(a[i + k * si], b[j + k * sj])),
            }
        },
    );
    (out, Layout { shape: al.shape.clone(), strides, offset: 0 })
}

/// Writes the elements of `src` (laid out by `sl`, broadcast to `dl`'s shape) into `dst` at `dl`.
pub(crate) fn copy_into(dst: &mut [f32], dl: &Layout, src: &[f32], sl: &Layout) {
    for_each_run(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], |len, [o, i], [so, si]| {
        if so == 1 && si == 1 {
            dst[o..o + len].copy_from_slice(&src[i..i + len]);
        } else {
            for k in 0..len {
                dst[o + k * so] = src[i + k * si];
            }
        }
    });
}

/// The elements in row-major order.
pub(crate) fn copy_contiguous(src: &[f32], l: &Layout) -> Vec<f32> {
    let n = l.numel();
    let mut out = alloc::take(n);
    if l.is_contiguous() {
        out.copy_from_slice(&src[l.offset..l.offset + n]);
        return out;
    }
    copy_into(&mut out, &Layout::contiguous(&l.shape), src, l);
    out
}

/// In place, `dst += alpha * src` with `src` (laid out by `sl`) broadcast to `dl`'s shape.
pub(crate) fn add_scaled_inplace(dst: &mut [f32], dl: &Layout, src: &[f32], sl: &Layout, alpha: f32) {
    for_each_run(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], |len, [o, i], [so, si]| {
        if so == 1 && si == 1 {
            dst[o..o + len].iter_mut().zip(&src[i..i + len]).for_each(|(d, &s)| *d += alpha * s);
        } else {
            (0..len).for_each(|k| dst[o + k * so] += alpha * src[i + k * si]);
        }
    });
}

/// In place, `dst *= alpha`.
pub(crate) fn scale_inplace(dst: &mut [f32], dl: &Layout, alpha: f32) {
    for_each_run(&dl.shape, [&dl.strides], [dl.offset], |len, [o], [so]| {
        (0..len).for_each(|k| dst[o + k * so] *= alpha);
    });
}

/// One SGD step of one element: returns the new parameter and updates the momentum buffer `b` (ignored
/// without `has_buffer`). The formula of [`crate::Tensor::sgd_update_`].
#[inline(always)]
fn sgd_element(p: f32, g: f32, b: &mut f32, has_buffer: bool, s: &SgdStep) -> f32 {
    let mut d = g + s.weight_decay * p;
    if has_buffer {
        *b = if s.first { d } else { s.momentum * *b + (1.0 - s.dampening) * d };
        d = if s.nesterov { d + s.momentum * *b } else { *b };
    }
    p - s.lr * d
}

/// One fused SGD step over strided `p` and `g` (same shape), with an optional momentum buffer.
pub(crate) fn sgd_update(
    p: &mut [f32],
    pl: &Layout,
    g: &[f32],
    gl: &Layout,
    buffer: Option<(&mut [f32], &Layout)>,
    s: &SgdStep,
) {
    match buffer {
        Some((b, bl)) => {
            let (strides, offsets) = ([&pl.strides[..], &gl.strides, &bl.strides], [pl.offset, gl.offset, bl.offset]);
            for_each_run(&pl.shape, strides, offsets, |len, [o, i, k], [so, si, sk]| {
                for j in 0..len {
                    p[o + j * so] = sgd_element(p[o + j * so], g[i + j * si], &mut b[k + j * sk], true, s);
                }
            });
        }
        None => {
            for_each_run(&pl.shape, [&pl.strides, &gl.strides], [pl.offset, gl.offset], |len, [o, i], [so, si]| {
                let mut unused = 0.0;
                for j in 0..len {
                    p[o + j * so] = sgd_element(p[o + j * so], g[i + j * si], &mut unused, false, s);
                }
            });
        }
    }
}

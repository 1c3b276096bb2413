//! Elementwise maps, in-place updates and reductions on the GPU (`kernels/elementwise.cu`, `kernels/reduce.cu`).

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::strided::plan;
use super::{err, gpu_of, grid, slice, slice_mut, wrap};
use crate::backend::{BinaryOp, ReduceOp, UnaryOp};
use crate::layout::Layout;
use crate::{Result, Tensor};

/// The kernel's op number and parameters for a unary op (`unary_f32` in elementwise.cu).
pub(crate) fn unary_code(op: UnaryOp) -> (i32, f32, f32) {
    match op {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Log => (2, 0.0, 0.0),
        UnaryOp::Relu => (3, 0.0, 0.0),
        UnaryOp::Sqrt | UnaryOp::Powf(0.5) => (4, 0.0, 0.0),
        UnaryOp::Powf(1.0) => (7, 0.0, 0.0),
        UnaryOp::Powf(2.0) => (8, 0.0, 0.0),
        UnaryOp::Powf(-1.0) => (9, 0.0, 0.0),
        UnaryOp::Powf(p) => (5, p, 0.0),
        UnaryOp::Affine { mul, add } => (6, mul, add),
    }
}

fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Eq => 4,
        BinaryOp::Gt => 5,
        BinaryOp::ReluGrad => 6,
    }
}

/// `op` applied to every element; like the CPU kernel, a dense input keeps its memory order.
pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let l = x.layout();
    let out_strides = if l.is_dense() { l.strides.clone() } else { Layout::contiguous(&l.shape).strides };
    map(x, out_strides, unary_code(op))
}

/// A row-major copy of `x`.
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    map(x, Layout::contiguous(x.shape()).strides, (7, 0.0, 0.0))
}

fn map(x: &Tensor, out_strides: Vec<usize>, (code, p0, p1): (i32, f32, f32)) -> Result<Tensor> {
    let g = gpu_of(x)?;
    let l = x.layout();
    let n = l.numel();
    let mut out = g.alloc::<f32>(n)?;
    if n > 0 {
        let (shape, [os, xs]) = plan(&l.shape, [&out_strides, &l.strides], [0, l.offset], true)?;
        let s = x.storage();
        let mut b = g.stream.launch_builder(g.func("unary_f32"));
        let n = n as i64;
        b.arg(&n).arg(&shape).arg(&os).arg(&xs).arg(slice(&s)).arg(&mut out).arg(&code).arg(&p0).arg(&p1);
        unsafe { b.launch(grid(l.numel())) }.map_err(err("unary"))?;
    }
    Ok(wrap(g, out, Layout { shape: l.shape.clone(), strides: out_strides, offset: 0 }))
}

/// `a op b` over layouts already broadcast to one shape; the output's memory order follows the CPU rule.
pub(crate) fn binary(a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, op: BinaryOp) -> Result<Tensor> {
    let g = gpu_of(a)?;
    let n = al.numel();
    let strides = if al.is_dense() && bl.is_dense() && al.strides == bl.strides {
        al.strides.clone()
    } else if al.is_dense() {
        al.dense_strides_like()
    } else {
        bl.dense_strides_like()
    };
    let mut out = g.alloc::<f32>(n)?;
    if n > 0 {
        let (shape, [os, sa, sb]) =
            plan(&al.shape, [&strides, &al.strides, &bl.strides], [0, al.offset, bl.offset], true)?;
        let (ga, gb) = (a.storage(), b.storage());
        let code = binary_code(op);
        let mut launch = g.stream.launch_builder(g.func("binary_f32"));
        let n = n as i64;
        launch.arg(&n).arg(&shape).arg(&os).arg(&sa).arg(&sb).arg(slice(&ga)).arg(slice(&gb)).arg(&mut out).arg(&code);
        unsafe { launch.launch(grid(al.numel())) }.map_err(err("binary"))?;
    }
    Ok(wrap(g, out, Layout { shape: al.shape.clone(), strides, offset: 0 }))
}

/// What [`update`] does to each element of `dst`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Update {
    /// `dst = src`.
    Copy,
    /// `dst += alpha * src`.
    AddScaled(f32),
    /// `dst *= alpha` (no source).
    Scale(f32),
}

/// Updates `dst`'s elements in place from `src` (laid out as `sl`, broadcast to `dst`'s shape).
pub(crate) fn update(dst: &Tensor, src: Option<(&Tensor, &Layout)>, how: Update) -> Result<()> {
    let g = gpu_of(dst)?;
    let dl = dst.layout().clone();
    let n = dl.numel();
    if n == 0 {
        return Ok(());
    }
    let (mode, alpha) = match how {
        Update::Copy => (0i32, 1.0f32),
        Update::AddScaled(a) => (1, a),
        Update::Scale(a) => (2, a),
    };
    let n = n as i64;
    match src {
        Some((src, sl)) => {
            let (shape, [ds, ss]) = plan(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], true)?;
            let s = src.storage();
            let mut d = dst.storage_mut();
            let mut b = g.stream.launch_builder(g.func("update_f32"));
            b.arg(&n).arg(&shape).arg(&ds).arg(&ss).arg(slice_mut(&mut d)).arg(slice(&s)).arg(&mode).arg(&alpha);
            unsafe { b.launch(grid(dl.numel())) }.map_err(err("update"))?;
        }
        None => {
            let (shape, [ds]) = plan(&dl.shape, [&dl.strides], [dl.offset], true)?;
            let mut d = dst.storage_mut();
            // The kernel never reads the source in mode 2, so a null pointer stands in for it.
            let null: u64 = 0;
            let mut b = g.stream.launch_builder(g.func("update_f32"));
            b.arg(&n).arg(&shape).arg(&ds).arg(&ds).arg(slice_mut(&mut d)).arg(&null).arg(&mode).arg(&alpha);
            unsafe { b.launch(grid(dl.numel())) }.map_err(err("scale"))?;
        }
    }
    Ok(())
}

/// Reduces over the dimensions flagged in `reduce`; the result is contiguous with those dimensions kept as 1.
pub(crate) fn reduce(x: &Tensor, reduce: &[bool], op: ReduceOp) -> Result<Tensor> {
    let g = gpu_of(x)?;
    let l = x.layout();
    let (mut shape, mut strides, mut out_shape) = (Vec::new(), Vec::new(), Vec::new());
    for d in (0..l.rank()).filter(|&d| !reduce[d]) {
        shape.push(l.shape[d]);
        strides.push(l.strides[d]);
    }
    let out_n: usize = shape.iter().product();
    for d in (0..l.rank()).filter(|&d| reduce[d]) {
        shape.push(l.shape[d]);
        strides.push(l.strides[d]);
    }
    let red_n: usize = l.shape.iter().zip(reduce).filter(|(_, r)| **r).map(|(s, _)| s).product();
    for d in 0..l.rank() {
        out_shape.push(if reduce[d] { 1 } else { l.shape[d] });
    }
    let mut out = g.alloc::<f32>(out_n)?;
    if out_n > 0 {
        let (kshape, [xs]) = plan(&shape, [&strides], [l.offset], false)?;
        let threads = red_n.next_power_of_two().clamp(32, 256) as u32;
        let cfg = LaunchConfig {
            grid_dim: (out_n.min(1 << 20) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let code = match op {
            ReduceOp::Sum => 0i32,
            ReduceOp::Max => 1,
        };
        let (o, r) = (out_n as i64, red_n as i64);
        let s = x.storage();
        let mut b = g.stream.launch_builder(g.func("reduce_f32"));
        b.arg(&o).arg(&r).arg(&kshape).arg(&xs).arg(slice(&s)).arg(&mut out).arg(&code);
        unsafe { b.launch(cfg) }.map_err(err("reduce"))?;
    }
    Ok(wrap(g, out, Layout::contiguous(&out_shape)))
}

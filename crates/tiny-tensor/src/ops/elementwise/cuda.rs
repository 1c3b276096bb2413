//! The GPU's elementwise kernels (`elementwise.cu`): unary maps, broadcast binary maps, copies and in-place updates.

use cudarc::driver::PushKernelArg;

use super::{BinaryOp, ElementwiseKernels, UnaryOp, Update};
use crate::cuda::strided::plan;
use crate::cuda::{Gpu, err, grid, slice, slice_mut, wrap};
use crate::layout::Layout;
use crate::{Result, Tensor};

impl ElementwiseKernels for Gpu {
    fn unary(&self, x: &Tensor, op: UnaryOp, [p0, p1]: [f32; 2]) -> Result<Tensor> {
        let l = x.layout();
        let out_strides = if l.is_dense() { l.strides.clone() } else { Layout::contiguous(&l.shape).strides };
        map(self, x, out_strides, (op as i32, p0, p1))
    }

    /// `a op b` over layouts already broadcast to one shape; the output's memory order follows the CPU rule.
    fn binary(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, op: BinaryOp) -> Result<Tensor> {
        let g = self;
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
            let (shape, st) = plan(&al.shape, [&strides, &al.strides, &bl.strides], [0, al.offset, bl.offset], true)?;
            let [os, sa, sb] = &st;
            let (ga, gb) = (a.storage(), b.storage());
            let (ga, gb) = (slice(&ga), slice(&gb));
            let code = op as i32;
            let cfg = grid(n);
            let n = n as i64;
            if shape.dense_len(&st).is_some() {
                let (va, vb) = (ga.slice(sa.offset()..), gb.slice(sb.offset()..));
                let mut launch = g.stream.launch_builder(g.func("binary_dense_f32"));
                launch.arg(&n).arg(&va).arg(&vb).arg(&mut out).arg(&code);
                unsafe { launch.launch(cfg) }.map_err(err("binary"))?;
            } else {
                let mut launch = g.stream.launch_builder(g.func("binary_f32"));
                launch.arg(&n).arg(&shape).arg(os).arg(sa).arg(sb).arg(ga).arg(gb).arg(&mut out).arg(&code);
                unsafe { launch.launch(cfg) }.map_err(err("binary"))?;
            }
        }
        Ok(wrap(g, out, Layout { shape: al.shape.clone(), strides, offset: 0 }))
    }

    /// Updates `dst`'s elements in place from `src` (laid out as `sl`, broadcast to `dst`'s shape).
    fn update(&self, dst: &Tensor, src: Option<(&Tensor, &Layout)>, how: Update) -> Result<()> {
        let g = self;
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
        if src.is_none() && mode != 2 {
            return Err(super::missing_source());
        }
        let (cfg, n) = (grid(n), n as i64);
        match src {
            Some((src, sl)) => {
                let (shape, st) = plan(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], true)?;
                let [ds, ss] = &st;
                let s = src.storage();
                let mut d = dst.storage_mut();
                let (d, s) = (slice_mut(&mut d), slice(&s));
                if shape.dense_len(&st).is_some() {
                    let (mut vd, vs) = (d.slice_mut(ds.offset()..), s.slice(ss.offset()..));
                    let mut b = g.stream.launch_builder(g.func("update_dense_f32"));
                    b.arg(&n).arg(&mut vd).arg(&vs).arg(&mode).arg(&alpha);
                    unsafe { b.launch(cfg) }.map_err(err("update"))?;
                } else {
                    let mut b = g.stream.launch_builder(g.func("update_f32"));
                    b.arg(&n).arg(&shape).arg(ds).arg(ss).arg(d).arg(s).arg(&mode).arg(&alpha);
                    unsafe { b.launch(cfg) }.map_err(err("update"))?;
                }
            }
            None => {
                let (shape, st) = plan(&dl.shape, [&dl.strides], [dl.offset], true)?;
                let [ds] = &st;
                let mut d = dst.storage_mut();
                let d = slice_mut(&mut d);
                // The kernels never read the source in mode 2, so a null pointer stands in for it.
                let null: u64 = 0;
                if shape.dense_len(&st).is_some() {
                    let mut vd = d.slice_mut(ds.offset()..);
                    let mut b = g.stream.launch_builder(g.func("update_dense_f32"));
                    b.arg(&n).arg(&mut vd).arg(&null).arg(&mode).arg(&alpha);
                    unsafe { b.launch(cfg) }.map_err(err("scale"))?;
                } else {
                    let mut b = g.stream.launch_builder(g.func("update_f32"));
                    b.arg(&n).arg(&shape).arg(ds).arg(ds).arg(d).arg(&null).arg(&mode).arg(&alpha);
                    unsafe { b.launch(cfg) }.map_err(err("scale"))?;
                }
            }
        }
        Ok(())
    }

    fn contiguous(&self, x: &Tensor) -> Result<Tensor> {
        map(self, x, Layout::contiguous(x.shape()).strides, (UnaryOp::Copy as i32, 0.0, 0.0))
    }

    fn to_vec(&self, x: &Tensor) -> Result<Vec<f32>> {
        let l = x.layout();
        if l.is_contiguous() {
            let s = x.storage();
            return self.download(slice(&s), l.offset, l.numel());
        }
        let c = self.contiguous(x)?;
        let s = c.storage();
        self.download(slice(&s), 0, l.numel())
    }

    fn copy_from_host(&self, x: &Tensor) -> Result<Tensor> {
        let l = x.layout();
        let data = if l.is_contiguous() {
            // Straight from the tensor's memory into the pinned staging buffer: one host copy.
            let s = x.storage();
            self.upload(&s.host()[l.offset..l.offset + l.numel()])?
        } else {
            self.upload(&crate::cpu::Cpu.to_vec(x)?)?
        };
        Ok(wrap(self, data, Layout::contiguous(x.shape())))
    }
}

fn map(g: &Gpu, x: &Tensor, out_strides: Vec<usize>, (code, p0, p1): (i32, f32, f32)) -> Result<Tensor> {
    let l = x.layout();
    let n = l.numel();
    let mut out = g.alloc::<f32>(n)?;
    if n > 0 {
        let (shape, st) = plan(&l.shape, [&out_strides, &l.strides], [0, l.offset], true)?;
        let [os, xs] = &st;
        let s = x.storage();
        let (cfg, n) = (grid(n), n as i64);
        if shape.dense_len(&st).is_some() {
            let vx = slice(&s).slice(xs.offset()..);
            let mut b = g.stream.launch_builder(g.func("unary_dense_f32"));
            b.arg(&n).arg(&vx).arg(&mut out).arg(&code).arg(&p0).arg(&p1);
            unsafe { b.launch(cfg) }.map_err(err("unary"))?;
        } else {
            let mut b = g.stream.launch_builder(g.func("unary_f32"));
            b.arg(&n).arg(&shape).arg(os).arg(xs).arg(slice(&s)).arg(&mut out).arg(&code).arg(&p0).arg(&p1);
            unsafe { b.launch(cfg) }.map_err(err("unary"))?;
        }
    }
    Ok(wrap(g, out, Layout { shape: l.shape.clone(), strides: out_strides, offset: 0 }))
}

//! The GPU's convolutions as im2col + cuBLAS on channels-last data (`conv.cu`).
//!
//! Inputs arrive as contiguous `[n, h, w, c]` tensors and weights in `[f, kh, kw, c]` order, the same
//! arrangement as the CPU kernels, so `mod.rs` wraps the results the same way for both devices.

use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};

use super::{Conv2dGeom, ConvKernels};
use crate::autocast::Precision;
use crate::cuda::strided::i32_of;
use crate::cuda::{Gpu, err, grid, rows, view};
use crate::ops::matmul::cuda::{Mat, gemm};
use crate::{Result, Storage, Tensor};

impl ConvKernels for Gpu {
    /// Forward convolution of a contiguous NHWC input; returns `[n, oh, ow, f]` data.
    fn conv2d(
        &self,
        x: &Tensor,
        wc: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let gpu = self;
        kgeom("conv2d", g)?;
        let (m, k, f) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c, g.f);
        let mut out = gpu.alloc::<f32>(m * f)?;
        let sw = wc.storage();
        let w = Mat { data: view(&sw, wc), rs: 1, cs: k, batch_stride: 0 };
        with_columns(gpu, x, g, |cols| gemm(gpu, "conv2d", (1, m, k, f), cols, &w, &mut out, precision))?;
        if bias.is_some() || relu {
            let sb = bias.map(|b| b.storage());
            let total = (m * f) as i64;
            let (fi, has_bias, r) = (i32_of("conv2d", "filters", f)?, i32::from(bias.is_some()), i32::from(relu));
            let null: u64 = 0;
            let mut b = gpu.stream.launch_builder(gpu.func("bias_relu_f32"));
            b.arg(&total).arg(&mut out);
            let bias_view = sb.as_ref().zip(bias).map(|(s, t)| view(s, t));
            match &bias_view {
                Some(v) => b.arg(v),
                None => b.arg(&null),
            };
            b.arg(&fi).arg(&has_bias).arg(&r);
            unsafe { b.launch(grid(m * f)) }.map_err(err("conv2d bias"))?;
        }
        Ok(gpu.storage(out))
    }

    /// The input gradient `[n, h, w, c]` from a contiguous NHWC output gradient: `dcol = dout @ W`, then col2im.
    fn conv2d_backward_input(
        &self,
        dout: &Tensor,
        wc: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let gpu = self;
        let kg = kgeom("conv2d backward", g)?;
        let (m, k, f) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c, g.f);
        let mut dcol = gpu.alloc::<f32>(m * k)?;
        {
            let (sd, sw) = (dout.storage(), wc.storage());
            let a = Mat { data: view(&sd, dout), rs: f, cs: 1, batch_stride: 0 };
            let w = Mat { data: view(&sw, wc), rs: k, cs: 1, batch_stride: 0 };
            gemm(gpu, "conv2d backward", (1, m, f, k), &a, &w, &mut dcol, precision)?;
        }
        if is_pointwise(g) {
            return Ok(gpu.storage(dcol));
        }
        let pixels = g.n * g.h * g.w;
        let mut dx = gpu.alloc::<f32>(pixels * g.c)?;
        let p = pixels as i64;
        let mut b = gpu.stream.launch_builder(gpu.func("col2im_f32"));
        b.arg(&p).arg(&kg).arg(&dcol).arg(&mut dx);
        unsafe { b.launch(rows(pixels, g.c)) }.map_err(err("col2im"))?;
        Ok(gpu.storage(dx))
    }

    /// The weight gradient `[f, kh, kw, c]`: `dW = dout^T @ col`.
    fn conv2d_backward_weight(
        &self,
        x: &Tensor,
        dout: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let gpu = self;
        kgeom("conv2d backward", g)?;
        // The im2col matrix is built again here, not kept from the forward pass: a trade of memory traffic for
        // memory. Rebuilding costs one im2col per conv that is not pointwise (the columns written, then read by the
        // GEMM): about 15 GB of traffic per resnet18 step at batch 128 and 128 px, by the estimate. Keeping
        // them would hold n*oh*ow*kh*kw*c floats per conv from the forward to the backward pass, on top of the
        // activations: 2.5 GB for all of resnet18's convs at that size (308 MB for the 7x7 stem alone), and more
        // with the batch or image size. Kept as is: the recomputation is the simple, memory-flat choice.
        let (m, k, f) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c, g.f);
        let mut dw = gpu.alloc::<f32>(f * k)?;
        let sd = dout.storage();
        let dt = Mat { data: view(&sd, dout), rs: 1, cs: f, batch_stride: 0 };
        with_columns(gpu, x, g, |cols| gemm(gpu, "conv2d backward", (1, f, m, k), &dt, cols, &mut dw, precision))?;
        Ok(gpu.storage(dw))
    }
}

/// `struct ConvGeom` of `kernels/conv.cu`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KGeom {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    f: i32,
    kh: i32,
    kw: i32,
    stride: i32,
    pad: i32,
    oh: i32,
    ow: i32,
}

// SAFETY: a `#[repr(C)]` struct of eleven `int`s, as in conv.cu.
unsafe impl DeviceRepr for KGeom {}

/// The geometry as the kernels take it, every size checked into 32 bits (an error that names `op` otherwise), and
/// the products the kernels form in 32 bits too: a column of im2col (`kh * kw * c`) and a padded row or column.
pub(crate) fn kgeom(op: &'static str, g: &Conv2dGeom) -> Result<KGeom> {
    let i = |what: &str, v: usize| i32_of(op, what, v);
    let kg = KGeom {
        n: i("batch size", g.n)?,
        c: i("channels", g.c)?,
        h: i("height", g.h)?,
        w: i("width", g.w)?,
        f: i("filters", g.f)?,
        kh: i("kernel height", g.kh)?,
        kw: i("kernel width", g.kw)?,
        stride: i("stride", g.stride)?,
        pad: i("padding", g.pad)?,
        oh: i("output height", g.oh())?,
        ow: i("output width", g.ow())?,
    };
    i("kh * kw * c", g.kh.saturating_mul(g.kw).saturating_mul(g.c))?;
    i("h + 2 * pad", g.h.saturating_add(g.pad.saturating_mul(2)))?;
    i("w + 2 * pad", g.w.saturating_add(g.pad.saturating_mul(2)))?;
    Ok(kg)
}

/// Whether im2col would copy the input unchanged (a 1x1 kernel, stride 1, no padding).
fn is_pointwise(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0
}

/// The im2col matrix `[n*oh*ow, kh*kw*c]` of a contiguous NHWC input.
fn im2col(gpu: &Gpu, x: &Tensor, g: &Conv2dGeom) -> Result<CudaSlice<f32>> {
    let (m, k) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c);
    let mut col = gpu.alloc::<f32>(m * k)?;
    let s = x.storage();
    let src = view(&s, x);
    let (r, kg) = (m as i64, kgeom("conv2d", g)?);
    let mut b = gpu.stream.launch_builder(gpu.func("im2col_f32"));
    b.arg(&r).arg(&kg).arg(&src).arg(&mut col);
    unsafe { b.launch(rows(m, k)) }.map_err(err("im2col"))?;
    Ok(col)
}

/// Runs `f` on the im2col matrix `[n*oh*ow, kh*kw*c]` of a contiguous NHWC input: the input itself for a
/// 1x1 stride-1 unpadded conv, else a fresh im2col buffer.
fn with_columns<R>(gpu: &Gpu, x: &Tensor, g: &Conv2dGeom, f: impl FnOnce(&Mat<'_>) -> Result<R>) -> Result<R> {
    let k = g.kh * g.kw * g.c;
    if is_pointwise(g) {
        let sx = x.storage();
        return f(&Mat { data: view(&sx, x), rs: k, cs: 1, batch_stride: 0 });
    }
    let col = im2col(gpu, x, g)?;
    f(&Mat { data: col.slice(..), rs: k, cs: 1, batch_stride: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(n: usize, c: usize, h: usize, w: usize, k: usize) -> Conv2dGeom {
        Conv2dGeom { n, c, h, w, f: 8, kh: k, kw: k, stride: 1, pad: 1 }
    }

    #[test]
    fn geometries_past_32_bits_are_errors_not_wrapped() {
        let ok = kgeom("conv2d", &geom(2, 3, 9, 9, 3)).unwrap();
        assert_eq!((ok.c, ok.oh, ok.ow), (3, 9, 9));
        // Each is a size that `as i32` would wrap: the channels, a side, and a column of im2col (2^31 floats).
        for (g, what) in [
            (geom(1, 1 << 31, 4, 4, 1), "channels = 2147483648"),
            (geom(1, 3, i32::MAX as usize, 4, 3), "h + 2 * pad = 2147483649"),
            (geom(1, 1 << 27, 4, 4, 4), "kh * kw * c = 2147483648"),
        ] {
            let err = kgeom("conv2d", &g).unwrap_err().to_string();
            assert!(err.starts_with("conv2d:") && err.contains(what), "{err}");
        }
    }
}

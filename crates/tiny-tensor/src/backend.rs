//! The one place that dispatches on the device: each raw kernel (no autograd) picks the CPU or CUDA code.
//!
//! Ops in `ops/` call these functions and attach their backward; they never look at the storage.

use crate::cpu;
use crate::layout::{Layout, broadcast_shapes};
use crate::{Device, Result, Storage, Tensor, TensorError};

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UnaryOp {
    Neg,
    Exp,
    Log,
    Relu,
    Sqrt,
    Powf(f32),
    /// `x * mul + add`.
    Affine {
        mul: f32,
        add: f32,
    },
}

/// Elementwise functions of two broadcast tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// 1.0 where equal, else 0.0.
    Eq,
    /// 1.0 where lhs > rhs, else 0.0.
    Gt,
    /// `lhs` where `rhs > 0`, else 0: the backward of ReLU with `rhs` its input.
    ReluGrad,
}

/// Reductions over chosen dimensions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ReduceOp {
    Sum,
    Max,
}

/// The host slice behind a storage. With the `cuda` feature this is where GPU storages branch off.
fn cpu(s: &Storage) -> &[f32] {
    match s {
        Storage::Cpu(v) => v,
        Storage::Cuda(c) => match *c {},
    }
}

fn cpu_mut(s: &mut Storage) -> &mut [f32] {
    match s {
        Storage::Cpu(v) => v,
        Storage::Cuda(c) => match *c {},
    }
}

fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(TensorError::DeviceMismatch { op, lhs: a.device(), rhs: b.device() });
    }
    Ok(())
}

fn new(data: Vec<f32>, layout: Layout) -> Tensor {
    Tensor::from_storage(Storage::Cpu(data), layout)
}

pub(crate) fn to_vec(x: &Tensor) -> Vec<f32> {
    let s = x.storage();
    cpu::copy_contiguous(cpu(&s), x.layout())
}

pub(crate) fn to_device(x: &Tensor, device: Device) -> Result<Tensor> {
    match device {
        Device::Cpu => Ok(contiguous(x)),
        Device::Cuda(_) => Err(TensorError::DeviceUnavailable {
            device,
            reason: "tiny-tensor has no CUDA backend yet; only the CPU is available".into(),
        }),
    }
}

pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Tensor {
    let s = x.storage();
    let (data, layout) = cpu::unary(cpu(&s), x.layout(), op);
    new(data, layout)
}

pub(crate) fn binary(name: &'static str, a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    same_device(name, a, b)?;
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let (al, bl) = (a.layout().broadcast_to(&shape)?, b.layout().broadcast_to(&shape)?);
    let (sa, sb) = (a.storage(), b.storage());
    let (data, layout) = cpu::binary(cpu(&sa), &al, cpu(&sb), &bl, op);
    Ok(new(data, layout))
}

/// Reduces over the dimensions flagged in `reduce`, keeping them with size 1.
pub(crate) fn reduce(x: &Tensor, reduce: &[bool], op: ReduceOp) -> Tensor {
    let s = x.storage();
    let (data, shape) = cpu::reduce(cpu(&s), x.layout(), reduce, op);
    new(data, Layout::contiguous(&shape))
}

/// Writes `src`, broadcast to `dst`'s shape, into `dst`'s memory.
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    same_device("assign", dst, src)?;
    let sl = src.layout().broadcast_to(dst.shape()).map_err(|_| TensorError::ShapeMismatch {
        op: "assign",
        lhs: dst.shape().to_vec(),
        rhs: src.shape().to_vec(),
    })?;
    let s = src.storage();
    let mut d = dst.storage_mut();
    cpu::copy_into(cpu_mut(&mut d), dst.layout(), cpu(&s), &sl);
    Ok(())
}

/// In place, `dst += alpha * src` (broadcast to `dst`'s shape).
pub(crate) fn add_scaled_inplace(dst: &Tensor, src: &Tensor, alpha: f32) -> Result<()> {
    same_device("add_scaled_", dst, src)?;
    let sl = src.layout().broadcast_to(dst.shape()).map_err(|_| TensorError::ShapeMismatch {
        op: "add_scaled_",
        lhs: dst.shape().to_vec(),
        rhs: src.shape().to_vec(),
    })?;
    let s = src.storage();
    let mut d = dst.storage_mut();
    cpu::add_scaled_inplace(cpu_mut(&mut d), dst.layout(), cpu(&s), &sl, alpha);
    Ok(())
}

/// In place, `dst *= alpha`.
pub(crate) fn scale_inplace(dst: &Tensor, alpha: f32) {
    let mut d = dst.storage_mut();
    cpu::scale_inplace(cpu_mut(&mut d), dst.layout(), alpha);
}

/// A row-major copy (a new storage).
pub(crate) fn contiguous(x: &Tensor) -> Tensor {
    new(to_vec(x), Layout::contiguous(x.shape()))
}

/// `c[b] = a[b] @ b[b]` for 3-D operands of shapes `[batch, m, k]` and `[batch, k, n]` (any strides;
/// a batch stride of 0 broadcasts).
pub(crate) fn matmul3(a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout) -> Result<Tensor> {
    same_device("matmul", a, b)?;
    let (sa, sb) = (a.storage(), b.storage());
    let (data, shape) = cpu::matmul3(cpu(&sa), al, cpu(&sb), bl);
    Ok(new(data, Layout::contiguous(&shape)))
}

/// The geometry of a 2-D convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeom {
    /// Batch size, input channels, input height and width.
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Output channels (filters); equal to `c` for pooling.
    pub f: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    /// Stride and zero padding, the same along both axes.
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
}

/// The data of `x` (logical NCHW) laid out channels-last: `[n, h, w, c]` row-major. Free when `x`
/// already is channels-last, a copy otherwise.
fn nhwc(x: &Tensor) -> Result<Tensor> {
    let cl = x.permute(&[0, 2, 3, 1])?;
    if cl.layout().is_contiguous() { Ok(cl) } else { cl.contiguous_copy() }
}

/// Wraps an `[n, h, w, c]` buffer as a logical NCHW tensor with channels-last strides.
fn from_nhwc(data: Vec<f32>, n: usize, c: usize, h: usize, w: usize) -> Tensor {
    let layout = Layout { shape: vec![n, c, h, w], strides: vec![h * w * c, 1, w * c, c], offset: 0 };
    new(data, layout)
}

/// Conv weights `[f, c, kh, kw]` reordered as `[f, kh, kw, c]`, the row order of channels-last im2col.
pub(crate) fn weight_fkkc(w: &Tensor) -> Result<Tensor> {
    w.permute(&[0, 2, 3, 1])?.contiguous_copy()
}

/// Forward convolution with weights already in `weight_fkkc` order; the result is NCHW with
/// channels-last strides.
pub(crate) fn conv2d(x: &Tensor, wc: &Tensor, bias: Option<&Tensor>, relu: bool, g: &Conv2dGeom) -> Result<Tensor> {
    same_device("conv2d", x, wc)?;
    let xc = nhwc(x)?;
    let bias = bias.map(|b| b.contiguous_copy()).transpose()?;
    let (sx, sw) = (xc.storage(), wc.storage());
    let sb = bias.as_ref().map(|b| b.storage());
    let out = cpu::conv2d_forward(&cpu(&sx)[xc.layout().offset..], cpu(&sw), sb.as_deref().map(cpu), relu, g);
    Ok(from_nhwc(out, g.n, g.f, g.oh(), g.ow()))
}

/// The gradient of a convolution's input from the output gradient `dout` and weights in
/// `weight_fkkc` order.
pub(crate) fn conv2d_backward_input(dout: &Tensor, wc: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let dc = nhwc(dout)?;
    let (sd, sw) = (dc.storage(), wc.storage());
    let dx = cpu::conv2d_backward_input(&cpu(&sd)[dc.layout().offset..], cpu(&sw), g);
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// The gradient of a convolution's weight `[f, c, kh, kw]` from its input and output gradient.
pub(crate) fn conv2d_backward_weight(x: &Tensor, dout: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let (xc, dc) = (nhwc(x)?, nhwc(dout)?);
    let (sx, sd) = (xc.storage(), dc.storage());
    let dw = cpu::conv2d_backward_weight(&cpu(&sx)[xc.layout().offset..], &cpu(&sd)[dc.layout().offset..], g);
    // [f, kh, kw, c] -> [f, c, kh, kw]
    new(dw, Layout::contiguous(&[g.f, g.kh, g.kw, g.c])).permute(&[0, 3, 1, 2])?.contiguous_copy()
}

/// Max pooling; returns the output (channels-last NCHW) and, per output element, the flat NHWC index
/// of the input element it came from.
pub(crate) fn max_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<(Tensor, Vec<u32>)> {
    let xc = nhwc(x)?;
    let sx = xc.storage();
    let (out, idx) = cpu::max_pool2d(&cpu(&sx)[xc.layout().offset..], g);
    Ok((from_nhwc(out, g.n, g.c, g.oh(), g.ow()), idx))
}

pub(crate) fn max_pool2d_backward(dout: &Tensor, idx: &[u32], g: &Conv2dGeom) -> Result<Tensor> {
    let dc = nhwc(dout)?;
    let sd = dc.storage();
    let dx = cpu::max_pool2d_backward(&cpu(&sd)[dc.layout().offset..], idx, g);
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// Average pooling (padding counts as zeros in the average, like PyTorch's default).
pub(crate) fn avg_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let xc = nhwc(x)?;
    let sx = xc.storage();
    let out = cpu::avg_pool2d(&cpu(&sx)[xc.layout().offset..], g);
    Ok(from_nhwc(out, g.n, g.c, g.oh(), g.ow()))
}

pub(crate) fn avg_pool2d_backward(dout: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let dc = nhwc(dout)?;
    let sd = dc.storage();
    let dx = cpu::avg_pool2d_backward(&cpu(&sd)[dc.layout().offset..], g);
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// Gathers slices along dimension 1 of a contiguous `[outer, size, inner]` view: `out[o, i, :] =
/// x[o, idx[i], :]`.
pub(crate) fn index_select(x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Tensor {
    let xc = if x.layout().is_contiguous() { x.clone() } else { contiguous(x) };
    let s = xc.storage();
    let data = cpu::index_select(&cpu(&s)[xc.layout().offset..], outer, size, inner, idx);
    new(data, Layout::contiguous(&[outer, idx.len(), inner]))
}

/// The adjoint of `index_select`: `out[o, idx[i], :] += g[o, i, :]` into zeros of `[outer, size, inner]`.
pub(crate) fn index_add(g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Tensor {
    let gc = if g.layout().is_contiguous() { g.clone() } else { contiguous(g) };
    let s = gc.storage();
    let data = cpu::index_add(&cpu(&s)[gc.layout().offset..], outer, size, inner, idx);
    new(data, Layout::contiguous(&[outer, size, inner]))
}

/// The position of the largest value along the last dimension of each row.
pub(crate) fn argmax_rows(x: &Tensor) -> Vec<u32> {
    let data = to_vec(x);
    let cols = x.shape().last().copied().unwrap_or(1).max(1);
    cpu::argmax_rows(&data, cols)
}

/// `x` (rank 4, channels on dimension 1) with data that reads as `[outer, c, inner]`: channels-last
/// gives `(n*h*w, c, 1)`, row-major NCHW gives `(n, c, h*w)`; any other layout is copied to the first.
fn channel_view(x: &Tensor) -> Result<(Tensor, (usize, usize, usize), bool)> {
    let s = x.shape();
    let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
    if x.layout().is_contiguous() {
        return Ok((x.clone(), (n, c, hw), false));
    }
    Ok((x.detach().to_channels_last()?, (n * hw, c, 1), true))
}

/// Per-channel mean and biased variance of a rank-4 tensor over `n, h, w`, as two `[c]` tensors.
pub(crate) fn batch_norm_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (xv, dims, _) = channel_view(x)?;
    let cl = nhwc_or_self(&xv, dims)?;
    let s = cl.storage();
    let (mean, var) = cpu::batchnorm::stats(&cpu(&s)[cl.layout().offset..], dims);
    Ok((Tensor::from_vec(mean, &[dims.1])?, Tensor::from_vec(var, &[dims.1])?))
}

/// The data of a channel view as a row-major tensor (NHWC for channels-last, NCHW otherwise).
fn nhwc_or_self(xv: &Tensor, dims: (usize, usize, usize)) -> Result<Tensor> {
    if dims.2 == 1 { nhwc(xv) } else { Ok(xv.clone()) }
}

/// `y = x * scale[c] + shift[c]` for a rank-4 tensor, keeping its memory format.
pub(crate) fn batch_norm_affine(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let (xv, dims, channels_last) = channel_view(x)?;
    let data = nhwc_or_self(&xv, dims)?;
    let (sx, sc, sh) = (data.storage(), scale.storage(), shift.storage());
    let y = cpu::batchnorm::affine(&cpu(&sx)[data.layout().offset..], dims, cpu(&sc), cpu(&sh));
    let s = x.shape();
    Ok(if channels_last { from_nhwc(y, s[0], s[1], s[2], s[3]) } else { new(y, Layout::contiguous(s)) })
}

/// The gradients `(dx, dw, db)` of training-mode batchnorm.
pub(crate) fn batch_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    w: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xv, dims, channels_last) = channel_view(x)?;
    let xd = nhwc_or_self(&xv, dims)?;
    let dyd = if channels_last { nhwc(dy)? } else { dy.contiguous_copy()? };
    let (sx, sd) = (xd.storage(), dyd.storage());
    let (sm, si, sw) = (mean.storage(), invstd.storage(), w.storage());
    let (dx, dw, db) = cpu::batchnorm::backward(
        &cpu(&sd)[dyd.layout().offset..],
        &cpu(&sx)[xd.layout().offset..],
        dims,
        cpu(&sm),
        cpu(&si),
        cpu(&sw),
    );
    let s = x.shape();
    let dx = if channels_last { from_nhwc(dx, s[0], s[1], s[2], s[3]) } else { new(dx, Layout::contiguous(s)) };
    Ok((dx, Tensor::from_vec(dw, &[dims.1])?, Tensor::from_vec(db, &[dims.1])?))
}

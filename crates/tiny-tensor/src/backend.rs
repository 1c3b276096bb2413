//! The one place that dispatches on the device: each raw kernel (no autograd) picks the CPU or CUDA code.
//!
//! Ops in `ops/` call these functions and attach their backward; they never look at the storage.

use crate::cpu;
use crate::layout::{Layout, broadcast_shapes};
use crate::{Device, Result, RunningStats, SgdStep, Storage, Tensor, TensorError, WarpPad};

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

/// Runs the CUDA backend's version of an op; without the `cuda` feature no tensor can be on a GPU, so the
/// branch that calls this never runs and reports the missing feature if it somehow did.
macro_rules! on_gpu {
    ($e:expr) => {{
        #[cfg(feature = "cuda")]
        {
            $e
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(no_cuda())
        }
    }};
}

#[cfg(not(feature = "cuda"))]
fn no_cuda() -> TensorError {
    TensorError::DeviceUnavailable {
        device: Device::Cuda(0),
        reason: "tiny-tensor was built without the `cuda` feature".into(),
    }
}

fn on_cuda(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cuda(_))
}

/// The host slice behind a storage (the caller checked that the tensor is on the CPU).
fn cpu(s: &Storage) -> &[f32] {
    match s {
        Storage::Cpu(v) => v,
        #[cfg(not(feature = "cuda"))]
        Storage::Cuda(c) => match *c {},
        #[cfg(feature = "cuda")]
        Storage::Cuda(_) => unreachable!("a CPU kernel was given a GPU storage"),
    }
}

fn cpu_mut(s: &mut Storage) -> &mut [f32] {
    match s {
        Storage::Cpu(v) => v,
        #[cfg(not(feature = "cuda"))]
        Storage::Cuda(c) => match *c {},
        #[cfg(feature = "cuda")]
        Storage::Cuda(_) => unreachable!("a CPU kernel was given a GPU storage"),
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

/// The data in row-major order, copied to the host.
pub(crate) fn to_vec(x: &Tensor) -> Result<Vec<f32>> {
    if on_cuda(x) {
        return on_gpu!(crate::cuda::to_vec(x));
    }
    let s = x.storage();
    Ok(cpu::copy_contiguous(cpu(&s), x.layout()))
}

pub(crate) fn to_device(x: &Tensor, device: Device) -> Result<Tensor> {
    match (x.device(), device) {
        (Device::Cpu, Device::Cpu) => contiguous(x),
        #[cfg(feature = "cuda")]
        _ => crate::cuda::to_device(x, device),
        #[cfg(not(feature = "cuda"))]
        _ => Err(TensorError::DeviceUnavailable {
            device,
            reason: "tiny-tensor was built without the `cuda` feature; build with `--features cuda`".into(),
        }),
    }
}

pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    if on_cuda(x) {
        return on_gpu!(crate::cuda::unary(x, op));
    }
    let s = x.storage();
    let (data, layout) = cpu::unary(cpu(&s), x.layout(), op);
    Ok(new(data, layout))
}

pub(crate) fn binary(name: &'static str, a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    same_device(name, a, b)?;
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let (al, bl) = (a.layout().broadcast_to(&shape)?, b.layout().broadcast_to(&shape)?);
    if on_cuda(a) {
        return on_gpu!(crate::cuda::binary(a, &al, b, &bl, op));
    }
    let (sa, sb) = (a.storage(), b.storage());
    let (data, layout) = cpu::binary(cpu(&sa), &al, cpu(&sb), &bl, op);
    Ok(new(data, layout))
}

/// Reduces over the dimensions flagged in `reduce`, keeping them with size 1.
pub(crate) fn reduce(x: &Tensor, reduce: &[bool], op: ReduceOp) -> Result<Tensor> {
    if on_cuda(x) {
        return on_gpu!(crate::cuda::reduce(x, reduce, op));
    }
    let s = x.storage();
    let (data, shape) = cpu::reduce(cpu(&s), x.layout(), reduce, op);
    Ok(new(data, Layout::contiguous(&shape)))
}

/// `src`'s layout broadcast to `dst`'s shape, or the error for `op`.
fn broadcast_src(op: &'static str, dst: &Tensor, src: &Tensor) -> Result<Layout> {
    same_device(op, dst, src)?;
    src.layout().broadcast_to(dst.shape()).map_err(|_| TensorError::ShapeMismatch {
        op,
        lhs: dst.shape().to_vec(),
        rhs: src.shape().to_vec(),
    })
}

/// Writes `src`, broadcast to `dst`'s shape, into `dst`'s memory.
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    let sl = broadcast_src("assign", dst, src)?;
    if on_cuda(dst) {
        return on_gpu!(crate::cuda::update(dst, Some((src, &sl)), crate::cuda::Update::Copy));
    }
    let s = src.storage();
    let mut d = dst.storage_mut();
    cpu::copy_into(cpu_mut(&mut d), dst.layout(), cpu(&s), &sl);
    Ok(())
}

/// In place, `dst += alpha * src` (broadcast to `dst`'s shape).
pub(crate) fn add_scaled_inplace(dst: &Tensor, src: &Tensor, alpha: f32) -> Result<()> {
    let sl = broadcast_src("add_scaled_", dst, src)?;
    if on_cuda(dst) {
        return on_gpu!(crate::cuda::update(dst, Some((src, &sl)), crate::cuda::Update::AddScaled(alpha)));
    }
    let s = src.storage();
    let mut d = dst.storage_mut();
    cpu::add_scaled_inplace(cpu_mut(&mut d), dst.layout(), cpu(&s), &sl, alpha);
    Ok(())
}

/// In place, `dst *= alpha`.
pub(crate) fn scale_inplace(dst: &Tensor, alpha: f32) -> Result<()> {
    if on_cuda(dst) {
        return on_gpu!(crate::cuda::update(dst, None, crate::cuda::Update::Scale(alpha)));
    }
    let mut d = dst.storage_mut();
    cpu::scale_inplace(cpu_mut(&mut d), dst.layout(), alpha);
    Ok(())
}

/// In place, one SGD step of `p` from `g`, with an optional momentum buffer (the caller, `ops/sgd.rs`,
/// checked that all three have one shape and one device and that no two of them share memory).
pub(crate) fn sgd_update(p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, step: &SgdStep) -> Result<()> {
    if on_cuda(p) {
        return on_gpu!(crate::cuda::sgd_update(p, g, buffer, step));
    }
    let s = g.storage();
    let mut d = p.storage_mut();
    match buffer {
        Some(b) => {
            let mut bs = b.storage_mut();
            let buf = Some((cpu_mut(&mut bs), b.layout()));
            cpu::sgd_update(cpu_mut(&mut d), p.layout(), cpu(&s), g.layout(), buf, step);
        }
        None => cpu::sgd_update(cpu_mut(&mut d), p.layout(), cpu(&s), g.layout(), None, step),
    }
    Ok(())
}

/// One SGD step of each `(p, g, momentum buffer, first)`. On a GPU, when no two tensors share memory, a
/// single kernel updates every parameter that it can walk as flat memory (dense, with its gradient and buffer
/// in the same memory order: row-major, or channels-last conv weights); any other is updated on its own.
pub(crate) fn sgd_update_all(items: &[(&Tensor, &Tensor, Option<&Tensor>, bool)], step: &SgdStep) -> Result<()> {
    let tensors: Vec<&Tensor> = items.iter().flat_map(|&(p, g, b, _)| [p, g].into_iter().chain(b)).collect();
    let device = tensors.first().map(|t| t.device());
    // `ops/sgd.rs` checked that each gradient and buffer is on its parameter's device.
    let flat = |&&(p, g, b, _): &&(&Tensor, &Tensor, Option<&Tensor>, bool)| {
        let pl = p.layout();
        Some(p.device()) == device
            && pl.is_dense()
            && [g].into_iter().chain(b).all(|t| t.layout().is_dense() && t.layout().same_memory_order(pl))
    };
    let one_launch = matches!(device, Some(Device::Cuda(_)))
        && tensors.iter().enumerate().all(|(i, a)| tensors[i + 1..].iter().all(|b| !a.shares_storage(b)));
    let (many, single): (Vec<_>, Vec<_>) =
        if one_launch { items.iter().partition(flat) } else { (vec![], items.iter().collect()) };
    if !many.is_empty() {
        on_gpu!(crate::cuda::sgd_update_many(&many.iter().map(|&&item| item).collect::<Vec<_>>(), step))?;
    }
    for &&(p, g, b, first) in &single {
        sgd_update(p, g, b, &SgdStep { first, ..*step })?;
    }
    Ok(())
}

/// A row-major copy (a new storage).
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    if on_cuda(x) {
        return on_gpu!(crate::cuda::contiguous(x));
    }
    Ok(new(to_vec(x)?, Layout::contiguous(x.shape())))
}

/// `c[b] = a[b] @ b[b]` for 3-D operands of shapes `[batch, m, k]` and `[batch, k, n]` (any strides;
/// a batch stride of 0 broadcasts).
pub(crate) fn matmul3(a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout) -> Result<Tensor> {
    same_device("matmul", a, b)?;
    if on_cuda(a) {
        return on_gpu!(crate::cuda::matmul3(a, al, b, bl));
    }
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
fn from_nhwc(data: Storage, n: usize, c: usize, h: usize, w: usize) -> Tensor {
    let layout = Layout { shape: vec![n, c, h, w], strides: vec![h * w * c, 1, w * c, c], offset: 0 };
    Tensor::from_storage(data, layout)
}

/// Conv weights `[f, c, kh, kw]` reordered as `[f, kh, kw, c]`, the row order of channels-last im2col: a
/// view of weights stored channels-last (as tiny-nn's layers store them), else a copy.
pub(crate) fn weight_fkkc(w: &Tensor) -> Result<Tensor> {
    let fkkc = w.detach().permute(&[0, 2, 3, 1])?;
    if weight_is_channels_last(w) { Ok(fkkc) } else { fkkc.contiguous_copy() }
}

/// Whether conv weights are stored channels-last, so that [`weight_fkkc`] is free and the weight gradient
/// can be returned in the same memory format.
pub(crate) fn weight_is_channels_last(w: &Tensor) -> bool {
    w.rank() == 4 && w.layout().permute(&[0, 2, 3, 1]).is_ok_and(|l| l.is_contiguous())
}

/// Forward convolution with weights already in `weight_fkkc` order; the result is NCHW with
/// channels-last strides.
pub(crate) fn conv2d(x: &Tensor, wc: &Tensor, bias: Option<&Tensor>, relu: bool, g: &Conv2dGeom) -> Result<Tensor> {
    same_device("conv2d", x, wc)?;
    if let Some(b) = bias {
        same_device("conv2d", x, b)?;
    }
    let xc = nhwc(x)?;
    let bias = bias.map(row_major).transpose()?;
    let out = if on_cuda(x) {
        on_gpu!(crate::cuda::conv2d(&xc, wc, bias.as_ref(), relu, g))?
    } else {
        let (sx, sw) = (xc.storage(), wc.storage());
        let sb = bias.as_ref().map(|b| (b.storage(), b.layout().offset));
        let bias = sb.as_ref().map(|(s, at)| &cpu(s)[*at..]);
        let w = &cpu(&sw)[wc.layout().offset..];
        Storage::Cpu(cpu::conv2d_forward(&cpu(&sx)[xc.layout().offset..], w, bias, relu, g))
    };
    Ok(from_nhwc(out, g.n, g.f, g.oh(), g.ow()))
}

/// The gradient of a convolution's input from the output gradient `dout` and weights in
/// `weight_fkkc` order.
pub(crate) fn conv2d_backward_input(dout: &Tensor, wc: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    same_device("conv2d_backward_input", dout, wc)?;
    let dc = nhwc(dout)?;
    let dx = if on_cuda(dout) {
        on_gpu!(crate::cuda::conv2d_backward_input(&dc, wc, g))?
    } else {
        let (sd, sw) = (dc.storage(), wc.storage());
        Storage::Cpu(cpu::conv2d_backward_input(&cpu(&sd)[dc.layout().offset..], &cpu(&sw)[wc.layout().offset..], g))
    };
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// The gradient of a convolution's weight `[f, c, kh, kw]` from its input and output gradient: in the
/// kernels' `[f, kh, kw, c]` memory order when `channels_last` (no copy), else row-major.
pub(crate) fn conv2d_backward_weight(x: &Tensor, dout: &Tensor, g: &Conv2dGeom, channels_last: bool) -> Result<Tensor> {
    same_device("conv2d_backward_weight", x, dout)?;
    let (xc, dc) = (nhwc(x)?, nhwc(dout)?);
    let dw = if on_cuda(x) {
        on_gpu!(crate::cuda::conv2d_backward_weight(&xc, &dc, g))?
    } else {
        let (sx, sd) = (xc.storage(), dc.storage());
        let (xs, ds) = (&cpu(&sx)[xc.layout().offset..], &cpu(&sd)[dc.layout().offset..]);
        Storage::Cpu(cpu::conv2d_backward_weight(xs, ds, g))
    };
    // [f, kh, kw, c] -> [f, c, kh, kw]
    let dw = Tensor::from_storage(dw, Layout::contiguous(&[g.f, g.kh, g.kw, g.c])).permute(&[0, 3, 1, 2])?;
    if channels_last { Ok(dw) } else { dw.contiguous_copy() }
}

/// Integer indices that an op's forward pass leaves for its backward, kept on the device of its tensors: the
/// winning input of each max-pool output (flat NHWC), or the target class of each row of a cross entropy.
pub(crate) enum Indices {
    Cpu(Vec<u32>),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::DeviceIndices),
}

/// Max pooling; returns the output (channels-last NCHW) and the winning input of each output element.
pub(crate) fn max_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<(Tensor, Indices)> {
    let xc = nhwc(x)?;
    let (out, idx) = if on_cuda(x) {
        on_gpu!(crate::cuda::max_pool2d(&xc, g).map(|(o, i)| (o, Indices::Cuda(i))))?
    } else {
        let sx = xc.storage();
        let (out, idx) = cpu::max_pool2d(&cpu(&sx)[xc.layout().offset..], g);
        (Storage::Cpu(out), Indices::Cpu(idx))
    };
    Ok((from_nhwc(out, g.n, g.c, g.oh(), g.ow()), idx))
}

pub(crate) fn max_pool2d_backward(dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Tensor> {
    let dc = nhwc(dout)?;
    let dx = match idx {
        Indices::Cpu(idx) if !on_cuda(dout) => {
            let sd = dc.storage();
            Storage::Cpu(cpu::max_pool2d_backward(&cpu(&sd)[dc.layout().offset..], idx, g))
        }
        #[cfg(feature = "cuda")]
        Indices::Cuda(idx) if on_cuda(dout) => crate::cuda::max_pool2d_backward(&dc, idx, g)?,
        _ => {
            return Err(TensorError::InvalidArgument {
                op: "max_pool2d_backward",
                msg: format!("the gradient is on {} but the pooling indices are not", dout.device()),
            });
        }
    };
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// Average pooling (padding counts as zeros in the average, like PyTorch's default).
pub(crate) fn avg_pool2d(x: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let xc = nhwc(x)?;
    let out = if on_cuda(x) {
        on_gpu!(crate::cuda::avg_pool2d(&xc, g))?
    } else {
        let sx = xc.storage();
        Storage::Cpu(cpu::avg_pool2d(&cpu(&sx)[xc.layout().offset..], g))
    };
    Ok(from_nhwc(out, g.n, g.c, g.oh(), g.ow()))
}

pub(crate) fn avg_pool2d_backward(dout: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let dc = nhwc(dout)?;
    let dx = if on_cuda(dout) {
        on_gpu!(crate::cuda::avg_pool2d_backward(&dc, g))?
    } else {
        let sd = dc.storage();
        Storage::Cpu(cpu::avg_pool2d_backward(&cpu(&sd)[dc.layout().offset..], g))
    };
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// Warps each image of `x` (logical NCHW) through its matrix, on channels-last data (free for tiny's
/// normalised batches, a copy otherwise); the result is NCHW with channels-last strides.
pub(crate) fn warp_perspective(x: &Tensor, mats: &[[f32; 9]], pad: WarpPad) -> Result<Tensor> {
    let s = x.shape();
    let dims = [s[0], s[1], s[2], s[3]];
    let xc = nhwc(x)?;
    let out = if on_cuda(x) {
        on_gpu!(crate::cuda::warp_perspective(&xc, mats, pad, dims))?
    } else {
        let sx = xc.storage();
        let len = xc.layout().numel();
        let data = &cpu(&sx)[xc.layout().offset..][..len];
        Storage::Cpu(cpu::warp_perspective(data, mats, pad, dims))
    };
    Ok(from_nhwc(out, dims[0], dims[1], dims[2], dims[3]))
}

/// `x` itself when row-major, else a row-major copy.
fn row_major(x: &Tensor) -> Result<Tensor> {
    if x.layout().is_contiguous() { Ok(x.clone()) } else { contiguous(x) }
}

/// Gathers slices along dimension 1 of a contiguous `[outer, size, inner]` view: `out[o, i, :] =
/// x[o, idx[i], :]`.
pub(crate) fn index_select(x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
    let xc = row_major(x)?;
    if on_cuda(x) {
        return on_gpu!(crate::cuda::index_select(&xc, outer, size, inner, idx));
    }
    let s = xc.storage();
    let data = cpu::index_select(&cpu(&s)[xc.layout().offset..], outer, size, inner, idx);
    Ok(new(data, Layout::contiguous(&[outer, idx.len(), inner])))
}

/// The adjoint of `index_select`: `out[o, idx[i], :] += g[o, i, :]` into zeros of `[outer, size, inner]`.
pub(crate) fn index_add(g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
    let gc = row_major(g)?;
    if on_cuda(g) {
        return on_gpu!(crate::cuda::index_add(&gc, outer, size, inner, idx));
    }
    let s = gc.storage();
    let data = cpu::index_add(&cpu(&s)[gc.layout().offset..], outer, size, inner, idx);
    Ok(new(data, Layout::contiguous(&[outer, size, inner])))
}

/// Fused cross-entropy of `[n, c]` logits with label smoothing `eps` (0 for none): the per-row losses
/// `(1 - eps) * (lse - x[i, targets[i]]) + eps * mean_j(lse - x[i, j])` and logsumexps `lse`, both `[n]`, and
/// the targets on the logits' device for the backward (uploaded once).
pub(crate) fn log_softmax_nll(x: &Tensor, targets: &[u32], eps: f32) -> Result<(Tensor, Tensor, Indices)> {
    let xc = row_major(x)?;
    if on_cuda(x) {
        return on_gpu!(crate::cuda::log_softmax_nll(&xc, targets, eps).map(|(l, s, t)| (l, s, Indices::Cuda(t))));
    }
    let s = xc.storage();
    let (off, len) = (xc.layout().offset, xc.layout().numel());
    let (loss, lse) = cpu::log_softmax_nll(&cpu(&s)[off..off + len], x.shape()[1], targets, eps);
    let n = targets.len();
    Ok((new(loss, Layout::contiguous(&[n])), new(lse, Layout::contiguous(&[n])), Indices::Cpu(targets.to_vec())))
}

/// The logits' gradient of `log_softmax_nll` from the per-row gradient `dloss`: `dloss * (softmax - q)`, with
/// `q = (1 - eps) * one_hot + eps / c` the smoothed target.
pub(crate) fn log_softmax_nll_backward(
    dloss: &Tensor,
    x: &Tensor,
    lse: &Tensor,
    targets: &Indices,
    eps: f32,
) -> Result<Tensor> {
    same_device("log_softmax_nll", dloss, x)?;
    let (dc, xc) = (row_major(dloss)?, row_major(x)?);
    let targets = match targets {
        Indices::Cpu(t) if !on_cuda(x) => t,
        #[cfg(feature = "cuda")]
        Indices::Cuda(t) if on_cuda(x) => return crate::cuda::log_softmax_nll_backward(&dc, &xc, lse, t, eps),
        _ => {
            return Err(TensorError::InvalidArgument {
                op: "log_softmax_nll",
                msg: format!("the gradient is on {} but the targets are not", x.device()),
            });
        }
    };
    let (sd, sx, sl) = (dc.storage(), xc.storage(), lse.storage());
    let (n, c) = (x.shape()[0], x.shape()[1]);
    // Exactly the tensors' elements: a view may have more of its storage after its last row.
    let (od, ox, ol) = (dc.layout().offset, xc.layout().offset, lse.layout().offset);
    let (ds, xs, ls) = (&cpu(&sd)[od..od + n], &cpu(&sx)[ox..ox + n * c], &cpu(&sl)[ol..ol + n]);
    Ok(new(cpu::log_softmax_nll_backward(ds, xs, ls, c, targets, eps), Layout::contiguous(x.shape())))
}

/// The position of the largest value along the last dimension of each row (computed on the host).
pub(crate) fn argmax_rows(x: &Tensor) -> Result<Vec<u32>> {
    let data = to_vec(x)?;
    let cols = x.shape().last().copied().unwrap_or(1).max(1);
    Ok(cpu::argmax_rows(&data, cols))
}

/// A rank-4 tensor's data arranged as `[outer, c, inner]` row-major, for the batchnorm kernels:
/// channels-last data is `(n*h*w, c, 1)`, row-major NCHW is `(n, c, h*w)`, and anything else is copied
/// to channels-last once.
pub(crate) struct ChannelData {
    data: Tensor,
    dims: (usize, usize, usize),
    channels_last: bool,
    shape: [usize; 4],
}

/// Arranges `x` for the batchnorm kernels (a view unless `x` is in neither memory format).
pub(crate) fn channel_data(x: &Tensor) -> Result<ChannelData> {
    let s = x.shape();
    let shape = [s[0], s[1], s[2], s[3]];
    let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
    if x.layout().is_contiguous() {
        return Ok(ChannelData { data: x.detach(), dims: (n, c, hw), channels_last: false, shape });
    }
    let data = nhwc(&x.detach().to_channels_last()?)?;
    Ok(ChannelData { data, dims: (n * hw, c, 1), channels_last: true, shape })
}

impl ChannelData {
    /// Wraps kernel output in the same memory format as the input.
    fn wrap(&self, data: Storage) -> Tensor {
        let [n, c, h, w] = self.shape;
        if self.channels_last {
            from_nhwc(data, n, c, h, w)
        } else {
            Tensor::from_storage(data, Layout::contiguous(&self.shape))
        }
    }

    /// `other` (same shape) in this data's memory format.
    fn same_format(&self, other: &Tensor) -> Result<Tensor> {
        if self.channels_last { nhwc(other) } else { other.contiguous_copy() }
    }
}

/// Wraps a `[c]` vector from either backend.
fn channel_vec(data: Storage, c: usize) -> Tensor {
    Tensor::from_storage(data, Layout::contiguous(&[c]))
}

/// A training batchnorm's per-channel values, all `[c]`: the batch's mean and biased variance, then
/// `invstd = 1 / sqrt(var + eps)` and the affine map's `scale = w * invstd` and `shift = b - mean * scale`.
pub(crate) struct BatchNormStats {
    pub(crate) mean: Tensor,
    pub(crate) var: Tensor,
    pub(crate) invstd: Tensor,
    pub(crate) scale: Tensor,
    pub(crate) shift: Tensor,
}

/// The statistics of `x` and what follows from them (see [`BatchNormStats`]), with the running statistics
/// updated in place (`count` values per channel make the variance unbiased): one kernel on a GPU, two passes
/// and a per-channel loop on the CPU. `ops/norm.rs` checked the running statistics.
pub(crate) fn batch_norm_stats(
    x: &ChannelData,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
    running: Option<RunningStats<'_>>,
    count: usize,
) -> Result<BatchNormStats> {
    same_device("batch_norm", &x.data, w)?;
    same_device("batch_norm", &x.data, b)?;
    let (w, b) = (row_major(w)?, row_major(b)?);
    let c = x.dims.1;
    let unbias = count as f32 / (count.max(2) - 1) as f32;
    let [mean, var, invstd, scale, shift] = if on_cuda(&x.data) {
        on_gpu!(crate::cuda::batch_norm_stats(
            &x.data,
            x.dims,
            &w,
            &b,
            eps,
            running.map(|r| (r.mean, r.var, r.momentum, r.num_batches_tracked)),
            unbias
        ))?
    } else {
        let sx = x.data.storage();
        let (m, v) = cpu::batchnorm::stats(&cpu(&sx)[x.data.layout().offset..], x.dims);
        let (sw, sb) = (w.storage(), b.storage());
        let (ws, bs) = (&cpu(&sw)[w.layout().offset..][..c], &cpu(&sb)[b.layout().offset..][..c]);
        let (invstd, scale, shift) = cpu::batchnorm::finalize(&m, &v, ws, bs, eps);
        if let Some(r) = running {
            for (stat, batch, factor) in [(r.mean, &m, 1.0), (r.var, &v, unbias)] {
                let mut st = stat.storage_mut();
                let dst = &mut cpu_mut(&mut st)[stat.layout().offset..][..c];
                cpu::batchnorm::update_running(dst, batch, factor, r.momentum);
            }
            if let Some(n) = r.num_batches_tracked {
                let mut st = n.storage_mut();
                cpu_mut(&mut st)[n.layout().offset] += 1.0;
            }
        }
        [m, v, invstd, scale, shift].map(Storage::Cpu)
    };
    let [mean, var, invstd, scale, shift] = [mean, var, invstd, scale, shift].map(|s| channel_vec(s, c));
    Ok(BatchNormStats { mean, var, invstd, scale, shift })
}

/// `y = x * scale[c] + shift[c]`, keeping the input's memory format.
pub(crate) fn batch_norm_affine(x: &ChannelData, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    same_device("batch_norm", &x.data, scale)?;
    same_device("batch_norm", &x.data, shift)?;
    let (scale, shift) = (row_major(scale)?, row_major(shift)?);
    let y = if on_cuda(&x.data) {
        on_gpu!(crate::cuda::batch_norm_affine(&x.data, x.dims, &scale, &shift))?
    } else {
        let (sx, sc, sh) = (x.data.storage(), scale.storage(), shift.storage());
        let (sc, sh) = (&cpu(&sc)[scale.layout().offset..], &cpu(&sh)[shift.layout().offset..]);
        Storage::Cpu(cpu::batchnorm::affine(&cpu(&sx)[x.data.layout().offset..], x.dims, sc, sh))
    };
    Ok(x.wrap(y))
}

/// The gradients `(dx, dw, db)` of training-mode batchnorm.
pub(crate) fn batch_norm_backward(
    dy: &Tensor,
    x: &ChannelData,
    mean: &Tensor,
    invstd: &Tensor,
    w: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xd, dims) = (&x.data, x.dims);
    let dyd = x.same_format(dy)?;
    let (mean, invstd, w) = (row_major(mean)?, row_major(invstd)?, row_major(w)?);
    let (dx, dw, db) = if on_cuda(xd) {
        on_gpu!(crate::cuda::batch_norm_backward(&dyd, xd, dims, &mean, &invstd, &w))?
    } else {
        let (sx, sd) = (xd.storage(), dyd.storage());
        let (sm, si, sw) = (mean.storage(), invstd.storage(), w.storage());
        let (dx, dw, db) = cpu::batchnorm::backward(
            &cpu(&sd)[dyd.layout().offset..],
            &cpu(&sx)[xd.layout().offset..],
            dims,
            &cpu(&sm)[mean.layout().offset..],
            &cpu(&si)[invstd.layout().offset..],
            &cpu(&sw)[w.layout().offset..],
        );
        (Storage::Cpu(dx), Storage::Cpu(dw), Storage::Cpu(db))
    };
    Ok((x.wrap(dx), channel_vec(dw, dims.1), channel_vec(db, dims.1)))
}

//! `conv2d`: 2-D convolution with stride and zero padding, forward and both backward passes.

mod cpu;
mod cpu_rgb;
mod cpu_rgb_bf16;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
mod winograd;

use crate::autocast::{Precision, autocast_precision};
use crate::autograd::Reads;
use crate::backend;
use crate::layout::Layout;
use crate::layout::format::{from_nhwc, nhwc, row_major, weight_fkkc, weight_is_channels_last};
use crate::{Result, Storage, Tensor, TensorError};

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

/// The convolution kernels each backend provides, on channels-last data: inputs and output gradients arrive
/// as row-major `[n, h, w, c]` tensors and weights in `[f, kh, kw, c]` order; results are buffers in the same
/// arrangement, which `mod.rs` wraps the same way for every device. Each computes its products in `precision`
/// (see `autocast.rs`).
pub(crate) trait ConvKernels {
    /// The forward convolution, `[n, oh, ow, f]`, with the bias (row-major `[f]`) and ReLU applied in place.
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage>;
    /// The input gradient `[n, h, w, c]`.
    fn conv2d_backward_input(&self, dout: &Tensor, w: &Tensor, g: &Conv2dGeom, precision: Precision)
    -> Result<Storage>;
    /// The weight gradient in `[f, kh, kw, c]` order.
    fn conv2d_backward_weight(
        &self,
        x: &Tensor,
        dout: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage>;
    /// For a convolution followed by ReLU: the weight gradient (`[f, kh, kw, c]`) and, when `bias`, the bias
    /// gradient (`[f]`), from the ReLU's output `out` and its output gradient `dout` (both `[n, oh, ow, f]`),
    /// masking `dout` as it is read; `None` where the backend has no such kernel for `g`, and the caller masks
    /// first. (The RGB stem in bf16 on the CPU has one: it saves two passes over its large output gradient.)
    fn conv2d_relu_backward_params(
        &self,
        _x: &Tensor,
        _dout: &Tensor,
        _out: &Tensor,
        _g: &Conv2dGeom,
        _precision: Precision,
        _bias: bool,
    ) -> Result<Option<(Storage, Option<Storage>)>> {
        Ok(None)
    }
}

/// Forward convolution with weights already in `weight_fkkc` order; the result is NCHW with channels-last
/// strides.
fn forward(
    x: &Tensor,
    wc: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    g: &Conv2dGeom,
    precision: Precision,
) -> Result<Tensor> {
    let be = backend::on_all("conv2d", x, &[wc].into_iter().chain(bias).collect::<Vec<_>>())?;
    let (xc, bias) = (nhwc(x)?, bias.map(row_major).transpose()?);
    let out = be.conv2d(&xc, wc, bias.as_ref(), relu, g, precision)?;
    Ok(from_nhwc(out, g.n, g.f, g.oh(), g.ow()))
}

/// The gradient of a convolution's input from the output gradient `dout` and weights in `weight_fkkc` order.
fn backward_input(dout: &Tensor, wc: &Tensor, g: &Conv2dGeom, precision: Precision) -> Result<Tensor> {
    let be = backend::on_all("conv2d_backward_input", dout, &[wc])?;
    let dx = be.conv2d_backward_input(&nhwc(dout)?, wc, g, precision)?;
    Ok(from_nhwc(dx, g.n, g.c, g.h, g.w))
}

/// The gradient of a convolution's weight `[f, c, kh, kw]` from its input and output gradient: in the
/// kernels' `[f, kh, kw, c]` memory order when `channels_last` (no copy), else row-major.
fn backward_weight(
    x: &Tensor,
    dout: &Tensor,
    g: &Conv2dGeom,
    channels_last: bool,
    precision: Precision,
) -> Result<Tensor> {
    let be = backend::on_all("conv2d_backward_weight", x, &[dout])?;
    let dw = be.conv2d_backward_weight(&nhwc(x)?, &nhwc(dout)?, g, precision)?;
    // [f, kh, kw, c] -> [f, c, kh, kw]
    weight_in_order(dw, g, channels_last)
}

/// A weight gradient in the kernels' `[f, kh, kw, c]` memory as a `[f, c, kh, kw]` tensor: in that memory order
/// when `channels_last` (no copy), else row-major.
fn weight_in_order(dw: Storage, g: &Conv2dGeom, channels_last: bool) -> Result<Tensor> {
    let dw = Tensor::from_storage(dw, Layout::contiguous(&[g.f, g.kh, g.kw, g.c])).permute(&[0, 3, 1, 2])?;
    if channels_last { Ok(dw) } else { dw.contiguous_copy() }
}

/// The weight and bias gradients of a ReLU'd convolution from one kernel that masks as it reads, where the
/// backend has one (see `ConvKernels::conv2d_relu_backward_params`).
fn relu_backward_params(
    x: &Tensor,
    dout: &Tensor,
    out: &Tensor,
    g: &Conv2dGeom,
    (channels_last, precision, bias): (bool, Precision, bool),
) -> Result<Option<(Tensor, Option<Tensor>)>> {
    let be = backend::on_all("conv2d_backward_weight", x, &[dout, out])?;
    let Some((dw, db)) = be.conv2d_relu_backward_params(&nhwc(x)?, &nhwc(dout)?, &nhwc(out)?, g, precision, bias)?
    else {
        return Ok(None);
    };
    let db = db.map(|db| Tensor::from_storage(db, Layout::contiguous(&[g.f])));
    Ok(Some((weight_in_order(dw, g, channels_last)?, db)))
}

impl Tensor {
    /// Cross-correlates `self` (`[n, c, h, w]`) with `weight` (`[f, c, kh, kw]`), adds `bias` (`[f]`) if
    /// given, and returns `[n, f, oh, ow]` with `oh = (h + 2 padding - kh) / stride + 1`.
    ///
    /// The result is laid out channels-last (NHWC memory behind NCHW indices), which lets the next
    /// layer's im2col and every elementwise op run without transposes.
    /// Backward: dx = col2im(g @ W), dW = g^T @ im2col(x), db = sum of g over n, h, w. Under
    /// [`autocast`](crate::autocast)`(Precision::Bf16)` all three products are bf16's, the bias sum f32.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize) -> Result<Tensor> {
        self.conv2d_with(weight, bias, stride, padding, false)
    }

    /// `relu(conv2d(x, weight, bias))` in one op: bias and ReLU are applied to each chunk of the output
    /// while it is still in cache, saving two passes over the activation. The backward masks the
    /// gradient with the output's sign (`relu(z) > 0` exactly where `z > 0`), then runs conv's.
    pub fn conv2d_relu(&self, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize) -> Result<Tensor> {
        self.conv2d_with(weight, bias, stride, padding, true)
    }

    fn conv2d_with(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<Tensor> {
        let mismatch =
            || TensorError::ShapeMismatch { op: "conv2d", lhs: self.shape().to_vec(), rhs: weight.shape().to_vec() };
        let (xs, ws) = (self.shape(), weight.shape());
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] {
            return Err(mismatch());
        }
        if stride == 0 || xs[2] + 2 * padding < ws[2] || xs[3] + 2 * padding < ws[3] {
            return Err(TensorError::InvalidArgument {
                op: "conv2d",
                msg: format!(
                    "kernel {:?} with stride {stride} and padding {padding} does not fit input {xs:?}",
                    &ws[2..]
                ),
            });
        }
        if let Some(b) = bias
            && b.shape() != [ws[0]]
        {
            return Err(TensorError::ShapeMismatch { op: "conv2d bias", lhs: b.shape().to_vec(), rhs: vec![ws[0]] });
        }
        let g = geom(xs, ws, stride, padding);
        // One channels-last copy of the input (none when it already is) serves forward and backward.
        let x_cl = self.detach().to_channels_last()?;
        // The weights reordered for channels-last im2col, shared by forward and backward-input.
        let w_fkkc = weight_fkkc(weight)?;
        let precision = autocast_precision();
        // PyTorch's autocast casts the bias to bf16 with the other operands; its gradient passes the cast unchanged.
        let rounded = match (bias, precision) {
            (Some(b), Precision::Bf16) => Some(b.round_bf16()?),
            _ => None,
        };
        let bias = rounded.as_ref().or(bias);
        let out = forward(&x_cl, &w_fkkc, bias, relu, &g, precision)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let saved = weight.requires_grad().then_some(x_cl);
        let w_channels_last = weight_is_channels_last(weight);
        let w_saved = self.requires_grad().then_some(w_fkkc);
        // The closure keeps the input and weights it needs; a ReLU'd convolution reads its output for the mask.
        let (name, reads) = if relu { ("conv2d_relu", Reads::Output) } else { ("conv2d", Reads::Nothing) };
        Ok(Tensor::record_reading(out, name, &inputs, reads, move |grad, out, x| {
            // A ReLU'd convolution whose input needs no gradient (a stem): a backend may mask the gradient and
            // sum the bias as it computes the weight gradient.
            let want_bias = x.get(2).is_some_and(|b| b.requires_grad());
            if let Some(x_cl) = saved.as_ref().filter(|_| relu && !x[0].requires_grad() && x[1].requires_grad()) {
                let how = (w_channels_last, precision, want_bias);
                if let Some((dw, db)) = relu_backward_params(x_cl, grad, out, &g, how)? {
                    return Ok([vec![None, Some(dw)], if x.len() > 2 { vec![db] } else { vec![] }].concat());
                }
            }
            let masked;
            let grad = if relu {
                masked = Tensor::relu_grad(grad, out)?;
                &masked
            } else {
                grad
            };
            let dx = match &w_saved {
                Some(wc) if x[0].requires_grad() => Some(backward_input(grad, wc, &g, precision)?),
                _ => None,
            };
            let dw = match &saved {
                Some(x_cl) if x[1].requires_grad() => {
                    Some(backward_weight(x_cl, grad, &g, w_channels_last, precision)?)
                }
                _ => None,
            };
            let mut grads = vec![dx, dw];
            if let Some(b) = x.get(2) {
                grads.push(if b.requires_grad() { Some(grad.sum(&[0, 2, 3], false)?) } else { None });
            }
            Ok(grads)
        }))
    }
}

fn geom(xs: &[usize], ws: &[usize], stride: usize, padding: usize) -> Conv2dGeom {
    Conv2dGeom { n: xs[0], c: xs[1], h: xs[2], w: xs[3], f: ws[0], kh: ws[2], kw: ws[3], stride, pad: padding }
}

/// Checks that `grad` is the output gradient of a convolution of `input_shape` by `weight_shape`.
fn check_grad(op: &'static str, grad: &Tensor, g: &Conv2dGeom) -> Result<()> {
    let want = [g.n, g.f, g.oh(), g.ow()];
    if grad.shape() != want {
        return Err(TensorError::ShapeMismatch { op, lhs: grad.shape().to_vec(), rhs: want.to_vec() });
    }
    Ok(())
}

impl Tensor {
    /// The gradient of a convolution's input, given the output gradient `self` and the weight: the
    /// backward-input pass alone, like `torch.nn.grad.conv2d_input`, in the [`autocast`](crate::autocast)
    /// precision of the moment. Records no graph.
    pub fn conv2d_input_grad(
        &self,
        weight: &Tensor,
        input_shape: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        if input_shape.len() != 4 || weight.rank() != 4 || stride == 0 {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d_input_grad",
                lhs: input_shape.to_vec(),
                rhs: weight.shape().to_vec(),
            });
        }
        let g = geom(input_shape, weight.shape(), stride, padding);
        check_grad("conv2d_input_grad", self, &g)?;
        backward_input(self, &weight_fkkc(weight)?, &g, autocast_precision())
    }

    /// The gradient of a convolution's weight, given the output gradient `self` and the input: the
    /// backward-weight pass alone, like `torch.nn.grad.conv2d_weight`, in the [`autocast`](crate::autocast)
    /// precision of the moment. Records no graph.
    pub fn conv2d_weight_grad(
        &self,
        input: &Tensor,
        weight_shape: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        if input.rank() != 4 || weight_shape.len() != 4 || stride == 0 {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d_weight_grad",
                lhs: input.shape().to_vec(),
                rhs: weight_shape.to_vec(),
            });
        }
        let g = geom(input.shape(), weight_shape, stride, padding);
        check_grad("conv2d_weight_grad", self, &g)?;
        backward_weight(input, self, &g, false, autocast_precision())
    }
}

//! `max_pool2d` and `avg_pool2d` over square windows, with their backward passes.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::Reads;
use crate::backend;
use crate::layout::format::{from_nhwc, nhwc};
use crate::ops::conv::Conv2dGeom;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor, TensorError};

/// The pooling kernels each backend provides, on row-major `[n, h, w, c]` inputs (and output gradients);
/// results are buffers in the same arrangement.
pub(crate) trait PoolKernels {
    /// Max pooling: the `[n, oh, ow, c]` output and the winning input (flat NHWC) of each output element.
    fn max_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<(Storage, Indices)>;
    /// The input gradient of max pooling: each output gradient goes to its window's winner.
    fn max_pool2d_backward(&self, dout: &Tensor, idx: &Indices, g: &Conv2dGeom) -> Result<Storage>;
    /// Average pooling, padding counted as zeros (PyTorch's default).
    fn avg_pool2d(&self, x: &Tensor, g: &Conv2dGeom) -> Result<Storage>;
    /// The input gradient of average pooling, spread evenly over each window.
    fn avg_pool2d_backward(&self, dout: &Tensor, g: &Conv2dGeom) -> Result<Storage>;
}

fn pool_geom(op: &'static str, x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Conv2dGeom> {
    let s = x.shape();
    if s.len() != 4
        || kernel == 0
        || stride == 0
        || 2 * padding > kernel
        || s[2] + 2 * padding < kernel
        || s[3] + 2 * padding < kernel
    {
        return Err(TensorError::InvalidArgument {
            op,
            msg: format!("kernel {kernel}, stride {stride}, padding {padding} do not fit input {s:?} (NCHW)"),
        });
    }
    Ok(Conv2dGeom { n: s[0], c: s[1], h: s[2], w: s[3], f: s[1], kh: kernel, kw: kernel, stride, pad: padding })
}

impl Tensor {
    /// The maximum over each `kernel x kernel` window of an NCHW tensor (padding never wins).
    /// The gradient flows only to the element that won each window.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let g = pool_geom("max_pool2d", self, kernel, stride, padding)?;
        let (out, idx) = backend::on(self)?.max_pool2d(&nhwc(self)?, &g)?;
        let out = from_nhwc(out, g.n, g.c, g.oh(), g.ow());
        Ok(Tensor::record_reading(out, "max_pool2d", &[self], Reads::Nothing, move |grad, _, _| {
            let dx = backend::on(grad)?.max_pool2d_backward(&nhwc(grad)?, &idx, &g)?;
            Ok(vec![Some(from_nhwc(dx, g.n, g.c, g.h, g.w))])
        }))
    }

    /// The mean over each `kernel x kernel` window of an NCHW tensor, padding counted as zeros.
    /// The gradient is spread evenly over each window.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let g = pool_geom("avg_pool2d", self, kernel, stride, padding)?;
        let out = backend::on(self)?.avg_pool2d(&nhwc(self)?, &g)?;
        let out = from_nhwc(out, g.n, g.c, g.oh(), g.ow());
        Ok(Tensor::record_reading(out, "avg_pool2d", &[self], Reads::Nothing, move |grad, _, _| {
            let dx = backend::on(grad)?.avg_pool2d_backward(&nhwc(grad)?, &g)?;
            Ok(vec![Some(from_nhwc(dx, g.n, g.c, g.h, g.w))])
        }))
    }
}

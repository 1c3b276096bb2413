//! `max_pool2d` and `avg_pool2d` over square windows, with their backward passes.

use crate::backend::{self, Conv2dGeom};
use crate::{Result, Tensor, TensorError};

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
        let (out, idx) = backend::max_pool2d(self, &g)?;
        Ok(Tensor::record(out, "max_pool2d", &[self], move |grad, _, _| {
            Ok(vec![Some(backend::max_pool2d_backward(grad, &idx, &g)?)])
        }))
    }

    /// The mean over each `kernel x kernel` window of an NCHW tensor, padding counted as zeros.
    /// The gradient is spread evenly over each window.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let g = pool_geom("avg_pool2d", self, kernel, stride, padding)?;
        let out = backend::avg_pool2d(self, &g)?;
        Ok(Tensor::record(out, "avg_pool2d", &[self], move |grad, _, _| {
            Ok(vec![Some(backend::avg_pool2d_backward(grad, &g)?)])
        }))
    }
}

//! Memory formats: channels-last views and copies of NCHW data and conv weights, and the per-channel arrangement batchnorm reads.

use super::Layout;
use crate::{Result, Storage, Tensor};

/// The data of `x` (logical NCHW) laid out channels-last: `[n, h, w, c]` row-major. Free when `x`
/// already is channels-last, a copy otherwise.
pub(crate) fn nhwc(x: &Tensor) -> Result<Tensor> {
    let cl = x.permute(&[0, 2, 3, 1])?;
    if cl.layout().is_contiguous() { Ok(cl) } else { cl.contiguous_copy() }
}

/// Wraps an `[n, h, w, c]` buffer as a logical NCHW tensor with channels-last strides.
pub(crate) fn from_nhwc(data: Storage, n: usize, c: usize, h: usize, w: usize) -> Tensor {
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

/// `x` itself when row-major, else a row-major copy.
pub(crate) fn row_major(x: &Tensor) -> Result<Tensor> {
    if x.layout().is_contiguous() { Ok(x.clone()) } else { x.contiguous_copy() }
}

/// A rank-4 tensor's data arranged as `[outer, c, inner]` row-major, for the batchnorm kernels:
/// channels-last data is `(n*h*w, c, 1)`, row-major NCHW is `(n, c, h*w)`, and anything else is copied
/// to channels-last once.
pub(crate) struct ChannelData {
    /// The data, row-major in the `dims` arrangement.
    pub(crate) data: Tensor,
    /// `(outer, c, inner)`.
    pub(crate) dims: (usize, usize, usize),
    channels_last: bool,
    shape: [usize; 4],
}

impl ChannelData {
    /// Arranges `x` for the batchnorm kernels (a view unless `x` is in neither memory format).
    pub(crate) fn new(x: &Tensor) -> Result<ChannelData> {
        let s = x.shape();
        let shape = [s[0], s[1], s[2], s[3]];
        let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
        if x.layout().is_contiguous() {
            return Ok(ChannelData { data: x.detach(), dims: (n, c, hw), channels_last: false, shape });
        }
        let data = nhwc(&x.detach().to_channels_last()?)?;
        Ok(ChannelData { data, dims: (n * hw, c, 1), channels_last: true, shape })
    }

    /// Wraps kernel output in the same memory format as the input.
    pub(crate) fn wrap(&self, data: Storage) -> Tensor {
        let [n, c, h, w] = self.shape;
        if self.channels_last {
            from_nhwc(data, n, c, h, w)
        } else {
            Tensor::from_storage(data, Layout::contiguous(&self.shape))
        }
    }

    /// `other` (same shape) in this data's memory format.
    pub(crate) fn same_format(&self, other: &Tensor) -> Result<Tensor> {
        if self.channels_last { nhwc(other) } else { other.contiguous_copy() }
    }
}

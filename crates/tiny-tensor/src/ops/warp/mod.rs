//! `warp_perspective`: fastai's batch warps (flips, rotations, zooms, perspective) as one bilinear resampling.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::is_grad_enabled;
use crate::backend;
use crate::layout::format::{from_nhwc, nhwc};
use crate::{Result, Storage, Tensor, TensorError};

/// The warp kernel each backend provides.
pub(crate) trait WarpKernels {
    /// Warps each image `b` of row-major channels-last `x` (`[n, h, w, c]`, with `dims` = `[n, c, h, w]`) through
    /// `mats[b]` into a new channels-last buffer.
    fn warp_perspective(&self, x: &Tensor, mats: &[[f32; 9]], pad: WarpPad, dims: [usize; 4]) -> Result<Storage>;
}

/// Warps each image of `x` (logical NCHW) through its matrix, on channels-last data (free for tiny's
/// normalised batches, a copy otherwise); the result is NCHW with channels-last strides.
fn warp(x: &Tensor, mats: &[[f32; 9]], pad: WarpPad) -> Result<Tensor> {
    let s = x.shape();
    let dims = [s[0], s[1], s[2], s[3]];
    let out = backend::on(x)?.warp_perspective(&nhwc(x)?, mats, pad, dims)?;
    Ok(from_nhwc(out, dims[0], dims[1], dims[2], dims[3]))
}

/// How [`Tensor::warp_perspective`] fills the points that fall outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarpPad {
    /// Reflect about the centres of the border pixels, again and again for points far outside, as PyTorch's
    /// `grid_sample(padding_mode="reflection", align_corners=True)`; fastai's default.
    #[default]
    Reflection,
    /// Read zeros outside the image, as `grid_sample(padding_mode="zeros", align_corners=True)`.
    Zeros,
}

impl Tensor {
    /// Resamples each image of an `[n, c, h, w]` batch through its own 3x3 matrix (row-major, one per image):
    /// what `F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=True)` computes for the
    /// grid that fastai's `aug_transforms` build from those matrices.
    ///
    /// Output pixel `(i, j)` of image `b` has normalised coordinates `x = -1 + 2 j / (w - 1)` and
    /// `y = -1 + 2 i / (h - 1)` (0 along a side of one pixel); `[u, v, s] = mats[b] @ [x, y, 1]` and the point
    /// `(u / s, v / s)`, mapped back to pixels by the same rule, is sampled bilinearly in every channel, with
    /// `pad` deciding what lies outside the image. A pixel whose `s` is zero or not finite is zero. Coordinates
    /// are computed in `f64`, and a point within 1e-6 pixel of a pixel centre is taken as that centre, so that
    /// the identity, flips and quarter turns copy pixels exactly. So `[[0, -1, 0], [1, 0, 0], [0, 0, 1]]` turns
    /// a square image a quarter turn counterclockwise (NumPy's `rot90`: `out[i][j] = in[j][w - 1 - i]`) and
    /// `[[-1, 0, 0], [0, 1, 0], [0, 0, 1]]` mirrors it left to right.
    ///
    /// The result is a new tensor on the input's device, channels-last like the outputs of `conv2d`; any
    /// memory order of the input is accepted. The op is for input augmentation and has no gradient: it records
    /// no graph, and it returns an error for an input that requires grad while grad mode is on (detach it, or
    /// call it under [`crate::no_grad`]).
    ///
    /// ```
    /// use tiny_tensor::{Tensor, WarpPad};
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    /// let flip = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    /// let y = x.warp_perspective(&[flip], WarpPad::Reflection).unwrap();
    /// assert_eq!(y.to_vec(), vec![2.0, 1.0, 4.0, 3.0]);
    /// assert!(x.warp_perspective(&[flip, flip], WarpPad::Zeros).is_err());
    /// ```
    pub fn warp_perspective(&self, mats: &[[f32; 9]], pad: WarpPad) -> Result<Tensor> {
        const OP: &str = "warp_perspective";
        let s = self.shape();
        if s.len() != 4 {
            return Err(TensorError::InvalidArgument {
                op: OP,
                msg: format!("expects a 4-D [n, c, h, w] tensor, got shape {s:?}"),
            });
        }
        if mats.len() != s[0] {
            return Err(TensorError::InvalidArgument {
                op: OP,
                msg: format!("got {} matrices for a batch of {} images (one 3x3 matrix per image)", mats.len(), s[0]),
            });
        }
        if self.requires_grad() && is_grad_enabled() {
            return Err(TensorError::InvalidArgument {
                op: OP,
                msg: "warp_perspective is not differentiable: detach the input or call it under no_grad".into(),
            });
        }
        warp(&self.detach(), mats, pad)
    }
}

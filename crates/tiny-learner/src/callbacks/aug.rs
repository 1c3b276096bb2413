//! `AugTransforms`: fastai's `aug_transforms` on the batch tensor (flip, rotate, zoom, warp, brightness, contrast).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use tiny_data::Normalize;
use tiny_tensor::{Tensor, WarpPad};

use crate::{Callback, CbResult, LearnerError, LearnerState, Result};
use tiny_data::mix;

/// A tag that keeps the augmentation's random stream apart from others derived from the same seed.
const STREAM: u64 = 0x4155_4754_4652_4d53;

/// A row-major 3x3 matrix acting on normalised coordinates `[x, y, 1]`.
pub type Mat3 = [f32; 9];

/// The identity.
const IDENTITY: Mat3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];

/// `a @ b`.
fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            out[r * 3 + c] = (0..3).map(|k| a[r * 3 + k] * b[k * 3 + c]).sum();
        }
    }
    out
}

/// fastai's `find_coeffs`: the homography that sends each point of `from` to the same-numbered point of `to`,
/// solved from the eight equations of the four pairs (Gaussian elimination with partial pivoting); `None` when
/// the points are degenerate.
pub fn find_coeffs(to: &[[f32; 2]; 4], from: &[[f32; 2]; 4]) -> Option<Mat3> {
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let ([x, y], [u, v]) = (from[i].map(f64::from), to[i].map(f64::from));
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..8 {
            if row != col {
                let f = a[row][col] / a[col][col];
                for k in col..9 {
                    a[row][k] -= f * a[col][k];
                }
            }
        }
    }
    let mut h = [1.0f32; 9];
    for (i, row) in a.iter().enumerate() {
        h[i] = (row[8] / row[i]) as f32;
    }
    Some(h)
}

/// fastai's `aug_transforms()` applied to each training batch as a tensor on its device, so that the same code runs
/// on the GPU: a horizontal flip (p 0.5), then with probability `p_affine` each a rotation up to `max_rotate`
/// degrees, a zoom in `[min_zoom, max_zoom]` about a random centre and a perspective warp of up to `max_warp`, all
/// composed into one homography per image and applied by one bilinear resampling with reflection padding
/// (`Tensor::warp_perspective`); then with probability `p_lighting` each a brightness and a contrast change of up
/// to `max_lighting`, in logit space as fastai's. It runs after `SetupLearner` (order -19), on the normalised
/// `[n, C, H, W]` batch: the warp commutes with the per-channel normalisation, and the lighting undoes it with
/// `stats` (the ones `SetupLearner` applied) and redoes it. Each image's draws are seeded by (seed, epoch, batch),
/// so a resumed fit and any worker count see the same augmented batches. Validation is unchanged.
#[derive(Debug, Clone)]
pub struct AugTransforms {
    /// Flip horizontally with probability one half.
    pub do_flip: bool,
    /// The largest rotation in degrees (fastai: 10).
    pub max_rotate: f32,
    /// The zoom range (fastai: 1 to 1.1).
    pub min_zoom: f32,
    /// See `min_zoom`.
    pub max_zoom: f32,
    /// The largest brightness and contrast change (fastai: 0.2).
    pub max_lighting: f32,
    /// The largest perspective warp (fastai: 0.2).
    pub max_warp: f32,
    /// The probability of each of rotation, zoom and warp (fastai: 0.75).
    pub p_affine: f32,
    /// The probability of each of brightness and contrast (fastai: 0.75).
    pub p_lighting: f32,
    /// How points outside the image are read (fastai: reflection).
    pub pad: WarpPad,
    /// The statistics the batch was normalised with, to apply lighting to the `[0, 1]` pixels.
    pub stats: Normalize,
}

impl AugTransforms {
    /// fastai's defaults, for batches normalised with `stats`.
    pub fn new(stats: Normalize) -> Self {
        AugTransforms {
            do_flip: true,
            max_rotate: 10.0,
            min_zoom: 1.0,
            max_zoom: 1.1,
            max_lighting: 0.2,
            max_warp: 0.2,
            p_affine: 0.75,
            p_lighting: 0.75,
            pad: WarpPad::Reflection,
            stats,
        }
    }

    /// No transform at all: every draw is neutral, so the batch is left as it is.
    pub fn none(stats: Normalize) -> Self {
        AugTransforms {
            do_flip: false,
            max_rotate: 0.0,
            min_zoom: 1.0,
            max_zoom: 1.0,
            max_lighting: 0.0,
            max_warp: 0.0,
            ..AugTransforms::new(stats)
        }
    }

    /// The random stream of batch `iter` of `epoch`.
    pub fn rng(seed: u64, epoch: usize, iter: usize) -> StdRng {
        StdRng::seed_from_u64(mix(&[seed ^ STREAM, epoch as u64, iter as u64]))
    }

    /// Draws one image's homography (fastai: `flip_mat @ rotate_mat @ zoom_mat`, then the warp's perspective on
    /// the resulting coordinates) and its brightness (in `(0, 1)`, 0.5 is neutral) and contrast (1 is neutral).
    pub fn draw(&self, rng: &mut StdRng) -> (Mat3, f32, f32) {
        let mut hit = |p: f32| p > 0.0 && rng.random::<f32>() < p;
        let flip = if self.do_flip && hit(0.5) { -1.0 } else { 1.0 };
        let (apply_rotate, apply_zoom) = (self.max_rotate > 0.0 && hit(self.p_affine), self.max_zoom > self.min_zoom);
        let apply_zoom = apply_zoom && hit(self.p_affine);
        let (apply_dx, apply_dy) =
            (self.max_warp > 0.0 && hit(self.p_affine), self.max_warp > 0.0 && hit(self.p_affine));
        let (apply_bright, apply_contrast) = (self.max_lighting > 0.0 && hit(self.p_lighting), self.max_lighting > 0.0);
        let apply_contrast = apply_contrast && hit(self.p_lighting);
        let mut uniform = |lo: f32, hi: f32| if hi > lo { rng.random_range(lo..hi) } else { lo };
        let theta = if apply_rotate { uniform(-self.max_rotate, self.max_rotate).to_radians() } else { 0.0 };
        let (c, s) = (theta.cos(), theta.sin());
        let rotate = [c, s, 0.0, -s, c, 0.0, 0.0, 0.0, 1.0];
        let scale = if apply_zoom { 1.0 / uniform(self.min_zoom, self.max_zoom) } else { 1.0 };
        let (col, row) = (uniform(0.0, 1.0), uniform(0.0, 1.0));
        let (col_c, row_c) = ((1.0 - scale) * (2.0 * col - 1.0), (1.0 - scale) * (2.0 * row - 1.0));
        let zoom = [scale, 0.0, col_c, 0.0, scale, row_c, 0.0, 0.0, 1.0];
        let flip = [flip, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let affine = matmul(&matmul(&flip, &rotate), &zoom);
        let m = self.max_warp;
        let dx = if apply_dx { uniform(-m, m) } else { 0.0 };
        let dy = if apply_dy { uniform(-m, m) } else { 0.0 };
        // fastai's _WarpCoord: the corners move by (dy, dx) as its target points say.
        let from = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]];
        let to = [[-1.0 - dy, -1.0 - dx], [-1.0 + dy, 1.0 + dx], [1.0 + dy, -1.0 + dx], [1.0 - dy, 1.0 - dx]];
        let warp = if dx == 0.0 && dy == 0.0 { IDENTITY } else { find_coeffs(&to, &from).unwrap_or(IDENTITY) };
        let l = self.max_lighting;
        let bright = if apply_bright { uniform(0.5 * (1.0 - l), 0.5 * (1.0 + l)) } else { 0.5 };
        let contrast = if apply_contrast { uniform((1.0 - l).ln(), -(1.0 - l).ln()).exp() } else { 1.0 };
        (matmul(&warp, &affine), bright, contrast)
    }

    /// Applies brightness and contrast to normalised `x` (`[n, C, H, W]`): back to `[0, 1]` with the stats, then
    /// `sigmoid((logit(p) + logit(b)) * c)` per image, then normalised again.
    fn lighting(&self, x: &Tensor, bright: &[f32], contrast: &[f32]) -> Result<Tensor> {
        let n = bright.len();
        let dev = x.device();
        let per_channel = |v: [f32; 3]| Tensor::from_vec(v.to_vec(), &[1, 3, 1, 1]).and_then(|t| t.to_device(dev));
        let (mean, std) = (per_channel(self.stats.mean)?, per_channel(self.stats.std)?);
        let p = x.mul(&std)?.add(&mean)?;
        // fastai's logit clamps to [1e-7, 1 - 1e-7]: lo + relu(p - lo) - relu(p - hi).
        let (lo, hi) = (1e-7f32, 1.0 - 1e-7f32);
        let p = p.add_scalar(-lo)?.relu()?.sub(&p.add_scalar(-hi)?.relu()?)?.add_scalar(lo)?;
        let logit = |t: &Tensor| -> Result<Tensor> { Ok(t.log()?.sub(&t.neg()?.add_scalar(1.0)?.log()?)?) };
        let b: Vec<f32> = bright.iter().map(|&b| (b / (1.0 - b)).ln()).collect();
        let b = Tensor::from_vec(b, &[n, 1, 1, 1])?.to_device(dev)?;
        let c = Tensor::from_vec(contrast.to_vec(), &[n, 1, 1, 1])?.to_device(dev)?;
        let z = logit(&p)?.add(&b)?.mul(&c)?;
        let sigmoid = z.neg()?.exp()?.add_scalar(1.0)?.powf(-1.0)?;
        Ok(sigmoid.sub(&mean)?.div(&std)?)
    }
}

impl Callback for AugTransforms {
    fn order(&self) -> i32 {
        // Right after SetupLearner (-20), which moved the batch to its device and normalised it.
        -19
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training || learn.batch.is_empty() {
            return Ok(());
        }
        let x = &learn.batch.x;
        let &[n, 3, _, _] = x.shape() else {
            let msg = format!("needs RGB images [n, 3, H, W] (after SetupLearner), got {:?}", x.shape());
            return Err(LearnerError::InvalidArgument { what: "AugTransforms", msg }.into());
        };
        let mut rng = AugTransforms::rng(learn.seed, learn.epoch, learn.iter);
        let draws: Vec<(Mat3, f32, f32)> = (0..n).map(|_| self.draw(&mut rng)).collect();
        let mut out = x.clone();
        if draws.iter().any(|(m, _, _)| *m != IDENTITY) {
            let mats: Vec<Mat3> = draws.iter().map(|d| d.0).collect();
            out = out.warp_perspective(&mats, self.pad)?;
        }
        if draws.iter().any(|&(_, b, c)| b != 0.5 || c != 1.0) {
            let (bright, contrast): (Vec<f32>, Vec<f32>) = draws.iter().map(|&(_, b, c)| (b, c)).unzip();
            out = self.lighting(&out, &bright, &contrast)?;
        }
        learn.batch.x = out;
        Ok(())
    }
}

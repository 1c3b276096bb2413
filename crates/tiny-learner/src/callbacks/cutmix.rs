//! `CutMix`: pastes a random box of another image of the batch into each image, and mixes the losses by area.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};

use tiny_tensor::Tensor;

use super::mixup::{lerp_loss, shuffled};
use crate::{Callback, CbResult, LearnerError, LearnerState, Result};
use tiny_data::mix;

/// A tag that keeps CutMix's random stream apart from others derived from the same seed.
const STREAM: u64 = 0x0000_4355_544d_4958;

/// fastai's `CutMix(alpha=1.)`: before each training batch it draws `lam ~ Beta(alpha, alpha)`, shuffles the
/// batch, and pastes into every image the same box of its shuffled partner: side `round(W * sqrt(1 - lam))` by
/// `round(H * sqrt(1 - lam))`, centred on a uniformly drawn pixel and clipped to the image. The loss becomes
/// `lam' * loss(y) + (1 - lam') * loss(y[perm])`, where `lam'` is the share of the image left unpasted. It runs on
/// the batch as the model sees it (`[n, C, H, W]`, after `SetupLearner`), with one mask on the batch's device.
/// Validation is unchanged; the random stream is seeded by the learner's seed and the epoch.
pub struct CutMix {
    /// The Beta distribution's parameter.
    pub alpha: f32,
    beta: Beta<f32>,
    rng: StdRng,
    y_perm: Option<tiny_data::Targets>,
    /// The unpasted share of every training batch so far.
    pub lams: Vec<f32>,
}

impl std::fmt::Debug for CutMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutMix").field("alpha", &self.alpha).finish()
    }
}

impl CutMix {
    /// CutMix with parameter `alpha` (fastai's default is 1); `alpha` must be positive and finite.
    pub fn new(alpha: f32) -> Result<Self> {
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| LearnerError::InvalidArgument { what: "CutMix::new", msg: format!("alpha {alpha}: {e}") })?;
        Ok(CutMix { alpha, beta, rng: StdRng::seed_from_u64(0), y_perm: None, lams: Vec::new() })
    }

    /// fastai's `rand_bbox`: the box `(x1, y1, x2, y2)` for weight `lam` in a `w x h` image.
    pub fn rand_bbox(&mut self, w: usize, h: usize, lam: f32) -> (usize, usize, usize, usize) {
        let cut = (1.0 - lam).max(0.0).sqrt();
        let (cut_w, cut_h) = ((w as f32 * cut).round() as i64, (h as f32 * cut).round() as i64);
        let (cx, cy) = (self.rng.random_range(0..w as i64), self.rng.random_range(0..h as i64));
        let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
        (clip(cx - cut_w / 2, w), clip(cy - cut_h / 2, h), clip(cx + cut_w / 2, w), clip(cy + cut_h / 2, h))
    }
}

impl Callback for CutMix {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("mixes each batch and its loss with new random boxes")
    }

    fn before_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.rng = StdRng::seed_from_u64(mix(&[learn.seed ^ STREAM, learn.epoch as u64]));
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.y_perm = None;
        if !learn.training || learn.batch.is_empty() {
            return Ok(());
        }
        let x = &learn.batch.x;
        let &[_, _, h, w] = x.shape() else {
            let msg = format!("needs images [n, C, H, W] (after SetupLearner), got {:?}", x.shape());
            return Err(LearnerError::InvalidArgument { what: "CutMix", msg }.into());
        };
        let lam = self.beta.sample(&mut self.rng);
        let (perm, y_perm) = shuffled(&mut self.rng, &learn.batch.y);
        let (x1, y1, x2, y2) = self.rand_bbox(w, h, lam);
        let mut mask = vec![0.0f32; h * w];
        for row in y1..y2 {
            mask[row * w + x1..row * w + x2].iter_mut().for_each(|m| *m = 1.0);
        }
        let mask = Tensor::from_vec(mask, &[1, 1, h, w])?.to_device(x.device())?;
        let other = x.index_select(0, &perm)?;
        learn.batch.x = x.add(&other.sub(x)?.mul(&mask)?)?;
        self.lams.push(1.0 - ((x2 - x1) * (y2 - y1)) as f32 / (w * h) as f32);
        self.y_perm = Some(y_perm);
        Ok(())
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        let Some(y_perm) = &self.y_perm else { return Ok(()) };
        learn.loss = lerp_loss(learn, y_perm, self.lams.last().copied().unwrap_or(1.0))?;
        Ok(())
    }
}

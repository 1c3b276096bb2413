//! `Mixup`: trains on convex combinations of pairs of images and of their losses (fastai's MixUp).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution};

use crate::data::mix;
use crate::{Callback, CbResult, LearnerError, LearnerState, Result};

/// A tag that keeps Mixup's random stream apart from others derived from the same seed.
const STREAM: u64 = 0x004d_4958_5550;

/// fastai's `MixUp(alpha)`, with one mixing weight per batch: before each training batch it draws
/// `lam ~ Beta(alpha, alpha)`, keeps `lam = max(lam, 1 - lam)` so the original image dominates,
/// shuffles the batch and trains on `x = lam * x + (1 - lam) * x[perm]`; after the loss it replaces
/// the loss by `lam * loss(preds, y) + (1 - lam) * loss(preds, y[perm])`. Validation is unchanged.
/// The random stream is seeded by the learner's `seed` and the epoch, so a resumed fit mixes the same
/// pairs.
#[derive(Debug)]
pub struct Mixup {
    /// The Beta distribution's parameter: small values mix little, 1 mixes uniformly.
    pub alpha: f32,
    beta: Beta<f32>,
    rng: StdRng,
    lam: f32,
    y_perm: Option<Vec<u32>>,
    /// The weight `lam` of every training batch so far.
    pub lams: Vec<f32>,
}

impl Mixup {
    /// Mixup with parameter `alpha` (fastai's default is 0.4); `alpha` must be positive and finite.
    pub fn new(alpha: f32) -> Result<Self> {
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| LearnerError::InvalidArgument { what: "Mixup::new", msg: format!("alpha {alpha}: {e}") })?;
        Ok(Mixup { alpha, beta, rng: StdRng::seed_from_u64(0), lam: 1.0, y_perm: None, lams: Vec::new() })
    }
}

impl Callback for Mixup {
    fn before_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.rng = StdRng::seed_from_u64(mix(learn.seed ^ STREAM, learn.epoch as u64));
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.y_perm = None;
        if !learn.training || learn.batch.is_empty() {
            return Ok(());
        }
        let lam = self.beta.sample(&mut self.rng);
        let lam = lam.max(1.0 - lam);
        let mut perm: Vec<u32> = (0..learn.batch.len() as u32).collect();
        perm.shuffle(&mut self.rng);
        let x = &learn.batch.x;
        let mixed = x.mul_scalar(lam)?.add(&x.index_select(0, &perm)?.mul_scalar(1.0 - lam)?)?;
        learn.batch.x = mixed;
        self.y_perm = Some(perm.iter().map(|&i| learn.batch.y[i as usize]).collect());
        self.lam = lam;
        self.lams.push(lam);
        Ok(())
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        let Some(y_perm) = &self.y_perm else { return Ok(()) };
        let other = (learn.loss_func)(&learn.preds, y_perm)?;
        learn.loss = learn.loss.mul_scalar(self.lam)?.add(&other.mul_scalar(1.0 - self.lam)?)?;
        Ok(())
    }
}

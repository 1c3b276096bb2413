//! `Mixup`: trains on convex combinations of pairs of images and of their losses (fastai's MixUp).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution};

use tiny_data::Targets;
use tiny_tensor::Tensor;

use crate::{Callback, CbResult, LearnerError, LearnerState, Result};
use tiny_data::mix;

/// A loss with one value per item (no reduction), like `tiny_nn::cross_entropy_items`.
pub type ItemLoss = Box<dyn Fn(&Tensor, &[u32]) -> tiny_nn::Result<Tensor>>;

/// A tag that keeps Mixup's random stream apart from others derived from the same seed.
const STREAM: u64 = 0x004d_4958_5550;

/// fastai's `MixUp(alpha)`: before each training batch it draws, for every item `i`, a weight
/// `lam_i ~ Beta(alpha, alpha)`, keeps `lam_i = max(lam_i, 1 - lam_i)` so the original image dominates,
/// shuffles the batch and trains on `x_i = lam_i * x_i + (1 - lam_i) * x[perm_i]`; after the loss it
/// replaces the loss by the mean over items of `lam_i * loss_i(y) + (1 - lam_i) * loss_i(y[perm])`, with
/// per-item losses from `tiny_nn::cross_entropy_items`, or `tiny_nn::bce_with_logits_items` for a multi-label batch
/// (change it with [`Mixup::with_item_loss`]), as
/// fastai does by switching its loss to `reduction='none'`. [`Mixup::per_batch`] draws one weight per batch
/// instead and mixes the learner's own (reduced) loss, for any loss function. Validation is unchanged. The
/// random stream is seeded by the learner's `seed` and the epoch, so a resumed fit mixes the same pairs.
pub struct Mixup {
    /// The Beta distribution's parameter: small values mix little, 1 mixes uniformly.
    pub alpha: f32,
    beta: Beta<f32>,
    rng: StdRng,
    /// The current batch's weights (one, or one per item, shaped to broadcast over the images) on the batch's
    /// device, and its shuffled labels.
    lam: Option<Tensor>,
    y_perm: Option<Targets>,
    /// `None` in per-batch mode; else the per-item loss.
    item_loss: Option<ItemLoss>,
    /// Whether `item_loss` is the default cross entropy, which a multi-label batch replaces by its binary form.
    default_loss: bool,
    /// Every weight drawn so far: one per training item (one per batch with `per_batch`).
    pub lams: Vec<f32>,
}

impl std::fmt::Debug for Mixup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixup").field("alpha", &self.alpha).field("per_item", &self.item_loss.is_some()).finish()
    }
}

impl Mixup {
    /// fastai's Mixup with parameter `alpha` (fastai's default is 0.4), one weight per item and
    /// cross-entropy per item; `alpha` must be positive and finite.
    pub fn new(alpha: f32) -> Result<Self> {
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| LearnerError::InvalidArgument { what: "Mixup::new", msg: format!("alpha {alpha}: {e}") })?;
        Ok(Mixup {
            alpha,
            beta,
            rng: StdRng::seed_from_u64(0),
            lam: None,
            y_perm: None,
            item_loss: Some(Box::new(tiny_nn::cross_entropy_items)),
            default_loss: true,
            lams: Vec::new(),
        })
    }

    /// Mixup with one weight per batch, mixing the learner's own loss (any loss function).
    pub fn per_batch(alpha: f32) -> Result<Self> {
        Ok(Mixup { item_loss: None, ..Mixup::new(alpha)? })
    }

    /// Uses `loss` (one value per item) for the per-item mix instead of cross-entropy.
    pub fn with_item_loss(mut self, loss: impl Fn(&Tensor, &[u32]) -> tiny_nn::Result<Tensor> + 'static) -> Self {
        self.item_loss = Some(Box::new(loss));
        self.default_loss = false;
        self
    }
}

impl Callback for Mixup {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("mixes each batch and its loss with new random weights")
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
        let n = learn.batch.len();
        let draws = if self.item_loss.is_some() { n } else { 1 };
        let lams: Vec<f32> = (0..draws)
            .map(|_| {
                let lam = self.beta.sample(&mut self.rng);
                lam.max(1.0 - lam)
            })
            .collect();
        self.lams.extend_from_slice(&lams);
        let (perm, y_perm) = shuffled(&mut self.rng, &learn.batch.y);
        let x = &learn.batch.x;
        // lam as [n, 1, 1, ...] (or one value), broadcast over each item, on the batch's device.
        let mut shape = vec![1; x.rank()];
        shape[0] = draws;
        let lam = Tensor::from_vec(lams, &shape)?.to_device(x.device())?;
        let other = x.index_select(0, &perm)?;
        learn.batch.x = other.add(&x.sub(&other)?.mul(&lam)?)?;
        self.y_perm = Some(y_perm);
        self.lam = Some(lam);
        Ok(())
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        let (Some(y_perm), Some(lam)) = (&self.y_perm, &self.lam) else { return Ok(()) };
        learn.loss = match &self.item_loss {
            Some(item_loss) => {
                // The weights drawn in `before_batch`, already on the device, as one per item.
                let lam = lam.reshape(&[lam.shape()[0]])?;
                let (y, y_perm) = (learn.batch.y.as_slice(), y_perm.as_slice());
                let (own, mixed) = if self.default_loss && learn.batch.y.is_multi_label() {
                    (
                        tiny_nn::bce_with_logits_items(&learn.preds, y)?,
                        tiny_nn::bce_with_logits_items(&learn.preds, y_perm)?,
                    )
                } else {
                    (item_loss(&learn.preds, y)?, item_loss(&learn.preds, y_perm)?)
                };
                // lerp(mixed, own, lam), averaged over the batch.
                mixed.add(&own.sub(&mixed)?.mul(&lam)?)?.mean_all()?
            }
            None => {
                // This batch's one weight is the last one recorded (read on the host, not from the device).
                lerp_loss(learn, y_perm, self.lams.last().copied().unwrap_or(1.0))?
            }
        };
        Ok(())
    }
}

/// A permutation of a batch's items drawn from `rng`, and the targets it brings to each place: the partners of
/// Mixup and CutMix.
pub(crate) fn shuffled(rng: &mut StdRng, y: &Targets) -> (Vec<u32>, Targets) {
    let mut perm: Vec<u32> = (0..y.len() as u32).collect();
    perm.shuffle(rng);
    let y_perm = y.select(&perm);
    (perm, y_perm)
}

/// `lam * loss(y) + (1 - lam) * loss(y_perm)`: the learner's own loss mixed with the partners' by one weight.
pub(crate) fn lerp_loss(learn: &LearnerState, y_perm: &Targets, lam: f32) -> Result<Tensor> {
    let other = (learn.loss_func)(&learn.preds, y_perm.as_slice())?;
    Ok(learn.loss.mul_scalar(lam)?.add(&other.mul_scalar(1.0 - lam)?)?)
}

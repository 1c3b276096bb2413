//! `Dropout`: in training, zero each activation with probability `p` and scale the rest by `1 / (1 - p)`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, NnError, Result, init};

/// Inverted dropout, as `nn.Dropout`: in training each element is kept with probability `1 - p` and then
/// multiplied by `1 / (1 - p)`, so that the expected activation is unchanged; in evaluation it is the identity.
/// The gradient flows through the kept elements with the same scale (the mask is a constant of the product).
///
/// Each layer draws its masks from a generator of its own, seeded from the thread's initialisation generator
/// when it is built: `tiny_nn::manual_seed(s)` before building a model fixes its masks, as `torch.manual_seed`
/// does; [`Dropout::seed`] reseeds one layer.
///
/// ```
/// use tiny_nn::{Dropout, Module};
/// use tiny_tensor::Tensor;
/// let drop = Dropout::new(0.5).unwrap();
/// let x = Tensor::ones(&[1000]);
/// let kept = drop.forward(&x).unwrap().to_vec();
/// assert!(kept.iter().all(|&v| v == 0.0 || v == 2.0));
/// drop.train(false);
/// assert_eq!(drop.forward(&x).unwrap().to_vec(), x.to_vec());
/// ```
#[derive(Debug)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f32,
    rng: Mutex<StdRng>,
    training: AtomicBool,
    hooks: Hooks,
}

impl Dropout {
    /// A dropout layer that zeroes with probability `p`, in training mode.
    ///
    /// # Errors
    /// [`NnError::InvalidArgument`] unless `0 <= p < 1` (PyTorch also takes `p = 1`, which zeroes everything
    /// and scales by infinity; tiny refuses it).
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(NnError::InvalidArgument {
                layer: "Dropout",
                msg: format!("the probability of zeroing must be in [0, 1), got {p}"),
            });
        }
        let rng = Mutex::new(StdRng::seed_from_u64(init::next_seed()));
        Ok(Dropout { p, rng, training: AtomicBool::new(true), hooks: Hooks::default() })
    }

    /// Reseeds this layer's generator.
    pub fn seed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = StdRng::seed_from_u64(seed);
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// The factor a kept element is multiplied by: `1 / (1 - p)`.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    /// A mask of `shape` drawn from the layer's generator: each element `scale()` with probability `1 - p`, else 0.
    pub fn mask(&self, shape: &[usize]) -> Result<Tensor> {
        let (p, scale) = (self.p, self.scale());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let n = shape.iter().product();
        let values = (0..n).map(|_| if rng.random::<f32>() < p { 0.0 } else { scale }).collect();
        Ok(Tensor::from_vec(values, shape)?)
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.is_training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        let mask = self.mask(x.shape())?.to_device(x.device())?;
        Ok(x.mul(&mask)?)
    }

    fn set_own_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    fn draws_per_forward(&self) -> Option<&'static str> {
        (self.is_training() && self.p > 0.0).then_some("draws a new dropout mask every step")
    }

    fn own_training(&self) -> Option<bool> {
        Some(self.is_training())
    }

    with_hooks!();
}

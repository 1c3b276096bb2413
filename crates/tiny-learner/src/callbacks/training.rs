//! fastai's `callback/training.py`: `GradientAccumulation` and `GradientClip`, which change how the optimizer steps.

use tiny_tensor::Tensor;

use crate::{Callback, Cancel, CbResult, LearnerError, LearnerState, Result};

/// fastai's `GradientClip`: before each optimizer step, when the L2 norm of all gradients together
/// exceeds `max_norm`, every gradient is scaled by `max_norm / norm` (PyTorch's `clip_grad_norm_`).
#[derive(Debug, Clone)]
pub struct GradientClip {
    /// The largest global gradient norm let through.
    pub max_norm: f32,
    /// The norm before clipping of the last step.
    pub last_norm: f32,
}

impl GradientClip {
    /// Clips to `max_norm` (fastai's default is 1).
    pub fn new(max_norm: f32) -> Self {
        GradientClip { max_norm, last_norm: 0.0 }
    }
}

impl Callback for GradientClip {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("rescales the gradients between backward and step")
    }

    fn before_step(&mut self, learn: &mut LearnerState) -> CbResult {
        let _no_grad = tiny_tensor::no_grad();
        let grads: Vec<Tensor> = learn.model.parameters().iter().filter_map(|p| p.grad()).collect();
        let mut total: Option<Tensor> = None;
        for g in &grads {
            let sq = g.mul(g)?.sum_all()?;
            total = Some(match total {
                Some(t) => t.add(&sq)?,
                None => sq,
            });
        }
        let norm = match total {
            Some(t) => t.item()?.sqrt(),
            None => 0.0,
        };
        self.last_norm = norm;
        if norm > self.max_norm {
            let scale = self.max_norm / (norm + 1e-6);
            for g in &grads {
                g.scale_(scale)?;
            }
        }
        Ok(())
    }
}

/// fastai's `GradientAccumulation(n_acc)`: the optimizer steps only once `n_acc` items have been seen, with the
/// gradients of the batches in between added up and each batch's loss weighted by its share of `n_acc`, so that
/// two batches of 64 with `n_acc = 128` step exactly as one batch of 128. The recorded loss is the batch's own.
#[derive(Debug, Clone)]
pub struct GradientAccumulation {
    /// The number of items per optimizer step.
    pub n_acc: usize,
    count: usize,
    unscaled: Option<Tensor>,
}

impl GradientAccumulation {
    /// Steps once every `n_acc` items.
    pub fn new(n_acc: usize) -> Result<Self> {
        if n_acc == 0 {
            return Err(LearnerError::InvalidArgument {
                what: "GradientAccumulation",
                msg: "n_acc must be >= 1".into(),
            });
        }
        Ok(GradientAccumulation { n_acc, count: 0, unscaled: None })
    }
}

impl Callback for GradientAccumulation {
    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("skips steps between backward passes")
    }

    fn order(&self) -> i32 {
        // Before the other callbacks' before_step (GradientClip), which must see the whole accumulated gradient.
        -5
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.count = 0;
        Ok(())
    }

    fn before_backward(&mut self, learn: &mut LearnerState) -> CbResult {
        let share = learn.batch.len() as f32 / self.n_acc as f32;
        self.unscaled = Some(learn.loss.clone());
        learn.loss = learn.loss.mul_scalar(share)?;
        Ok(())
    }

    fn after_backward(&mut self, learn: &mut LearnerState) -> CbResult {
        if let Some(loss) = self.unscaled.take() {
            learn.loss = loss;
        }
        Ok(())
    }

    fn before_step(&mut self, learn: &mut LearnerState) -> CbResult {
        self.count += learn.batch.len();
        if self.count < self.n_acc {
            // Skips the step and the zero_grad after it, so the gradients keep adding up.
            return Err(Cancel::Batch.into());
        }
        self.count = 0;
        Ok(())
    }
}

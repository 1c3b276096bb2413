//! `GradientClip`: rescales the gradients when their global norm is too large.

use tiny_tensor::Tensor;

use crate::{Callback, CbResult, LearnerState};

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

//! `PhaseTally`: the per-phase loss sum and metrics that `TrackResults` and the `Recorder` both add up.

use tiny_tensor::Tensor;

use crate::metrics::{Metric, fresh};
use crate::{LearnerState, Result};

/// Adds up one phase: the loss weighted by batch size, as a tensor on the loss's device, and the metrics, which
/// keep predictions to count in bulk; nothing is read back to the host until [`finish`](Self::finish).
#[derive(Debug, Default)]
pub(crate) struct PhaseTally {
    loss_sum: Option<Tensor>,
    n: usize,
    metrics: Vec<Box<dyn Metric>>,
}

/// What [`PhaseTally::finish`] read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhaseTotals {
    /// The mean loss per item, `None` when no batch was added.
    pub(crate) loss: Option<f32>,
    /// The number of items.
    pub(crate) n: usize,
    /// Each metric's name and value, in the learner's order.
    pub(crate) metrics: Vec<(String, f32)>,
}

impl PhaseTally {
    /// Starts a phase that tallies reset copies of `metrics` (none for the loss alone).
    pub(crate) fn begin(&mut self, metrics: &[Box<dyn Metric>]) {
        self.loss_sum = None;
        self.n = 0;
        self.metrics = metrics.iter().map(|m| fresh(m.as_ref())).collect();
    }

    /// Forgets the phase so far, as when it was cancelled.
    pub(crate) fn clear(&mut self) {
        self.begin(&[]);
    }

    /// Adds the current batch: its loss times its size, and its predictions and targets to every metric.
    pub(crate) fn add_batch(&mut self, learn: &LearnerState) -> Result<()> {
        let n = learn.batch.len();
        let _no_grad = tiny_tensor::no_grad();
        let weighted = learn.loss.detach().mul_scalar(n as f32)?;
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum.add(&weighted)?,
            None => weighted,
        });
        self.n += n;
        for m in &mut self.metrics {
            m.accumulate(&learn.preds, learn.batch.y.as_slice())?;
        }
        Ok(())
    }

    /// Reads the phase's results back: on a GPU this waits for the phase's queued work.
    pub(crate) fn finish(&mut self) -> Result<PhaseTotals> {
        let loss = match &self.loss_sum {
            Some(t) => Some(t.item()? / self.n.max(1) as f32),
            None => None,
        };
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for m in &mut self.metrics {
            metrics.push((m.name(), m.value()?));
        }
        Ok(PhaseTotals { loss, n: self.n, metrics })
    }
}

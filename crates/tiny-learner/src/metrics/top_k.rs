//! `TopKAccuracy`: fastai's `top_k_accuracy`, counted on the host from the kept scores.

use tiny_tensor::Tensor;

use super::{Metric, PendingPreds, ratio};
use crate::{LearnerError, Result};

/// fastai's `top_k_accuracy`: the fraction of items whose target is among the `k` best scores of its row.
///
/// The column is named `top_{k}_accuracy` (`top_3_accuracy`), so that two values of `k` make two columns;
/// fastai names it `top_k_accuracy` whatever `k`. Ties are broken as `argmax` breaks them, by the lower class
/// index, so the target is among the top `k` when fewer than `k` classes score more than it or score the same
/// with a lower index; `k = 1` is then exactly [`Accuracy`](super::Accuracy). With `k` at least the number of
/// classes every item counts (PyTorch's `topk` would fail instead). A NaN score of the target never counts.
#[derive(Debug, Clone)]
pub struct TopKAccuracy {
    k: usize,
    pending: PendingPreds,
    hits: u64,
    total: u64,
}

impl TopKAccuracy {
    /// Counts the items whose target is among the `k` best predictions.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when `k` is 0.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            let msg = "k must be at least 1".to_string();
            return Err(LearnerError::InvalidArgument { what: "top_k_accuracy", msg });
        }
        Ok(TopKAccuracy { k, pending: PendingPreds::default(), hits: 0, total: 0 })
    }

    /// The `k` of this metric.
    pub fn k(&self) -> usize {
        self.k
    }

    fn flush(&mut self) -> Result<()> {
        for (preds, targets) in self.pending.drain() {
            let scores = preds.try_to_vec()?;
            let classes = preds.shape()[1].max(1);
            for (row, &t) in scores.chunks(classes).zip(&targets) {
                let t = t as usize;
                let st = row[t];
                let ahead = row.iter().enumerate().filter(|&(j, &s)| s > st || (s == st && j < t)).count();
                if !st.is_nan() && ahead < self.k {
                    self.hits += 1;
                }
            }
            self.total += targets.len() as u64;
        }
        Ok(())
    }
}

impl Metric for TopKAccuracy {
    fn name(&self) -> String {
        format!("top_{}_accuracy", self.k)
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.hits = 0;
        self.total = 0;
    }

    fn accumulate(&mut self, preds: &Tensor, targets: &[u32]) -> Result<()> {
        if self.pending.push("top_k_accuracy", preds, targets)? {
            self.flush()?;
        }
        Ok(())
    }

    fn value(&mut self) -> Result<f32> {
        self.flush()?;
        Ok(ratio(self.hits, self.total))
    }
}

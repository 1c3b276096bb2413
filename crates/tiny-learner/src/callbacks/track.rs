//! `TrackResults`: the chapter's per-phase line, `epoch train? loss accuracy`, and its history.

use std::time::Instant;

use tiny_tensor::Tensor;

use crate::{Callback, CbResult, LearnerState};

/// The results of one training or validation phase, as the chapter's `TrackResults` records them.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRecord {
    /// The epoch, from 0.
    pub epoch: usize,
    /// Whether this was the training phase.
    pub train: bool,
    /// The mean loss per item.
    pub loss: f32,
    /// The fraction of items whose top prediction is the target.
    pub acc: f32,
    /// The number of items.
    pub n: usize,
    /// The phase's wall time in seconds.
    pub secs: f64,
    /// Items per second.
    pub img_per_s: f64,
    /// Seconds spent waiting for the loader's next batch (see `LearnerState::data_wait`).
    pub data_wait_secs: f64,
}

/// Counts correct top predictions without reading them back every batch. Like the chapter's `TrackResults`,
/// which keeps each batch's count as a tensor, it keeps each batch's predictions and counts them at the end
/// of the phase (or every [`HITS_PENDING`] batches): reading a GPU tensor waits for all the work queued
/// before it, so a read per batch would stop the host from queueing the next step while the GPU runs this one.
#[derive(Debug, Default)]
pub(crate) struct Hits {
    pending: Vec<(Tensor, Vec<u32>)>,
    counted: usize,
}

/// The most batches whose predictions [`Hits`] keeps before it counts them.
const HITS_PENDING: usize = 32;

impl Hits {
    /// Keeps `preds` (rows of scores, detached) and their targets for counting.
    pub(crate) fn push(&mut self, preds: &Tensor, targets: &[u32]) -> tiny_tensor::Result<()> {
        self.pending.push((preds.detach(), targets.to_vec()));
        if self.pending.len() >= HITS_PENDING {
            self.count()?;
        }
        Ok(())
    }

    /// The number of correct predictions so far.
    pub(crate) fn count(&mut self) -> tiny_tensor::Result<usize> {
        for (preds, targets) in self.pending.drain(..) {
            self.counted += preds.argmax(-1)?.iter().zip(&targets).filter(|(p, y)| p == y).count();
        }
        Ok(self.counted)
    }
}

/// Accumulates the loss and the accuracy of each phase (as tensors and kept predictions, so without a
/// per-batch host synchronisation) and prints the chapter's line at its end:
/// `0 True  loss 2.1234 acc 0.2345 n 9469 time 12.34s 767 img/s`.
#[derive(Debug, Default)]
pub struct TrackResults {
    /// One record per finished phase.
    pub history: Vec<PhaseRecord>,
    quiet: bool,
    loss_sum: Option<Tensor>,
    hits: Hits,
    n: usize,
    start: Option<Instant>,
}

impl TrackResults {
    /// A tracker that prints a line after each phase.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that records without printing.
    pub fn quiet() -> Self {
        TrackResults { quiet: true, ..Self::default() }
    }

    /// The last validation record, if any.
    pub fn last_valid(&self) -> Option<&PhaseRecord> {
        self.history.iter().rev().find(|r| !r.train)
    }

    /// The last training record, if any.
    pub fn last_train(&self) -> Option<&PhaseRecord> {
        self.history.iter().rev().find(|r| r.train)
    }

    fn begin(&mut self) -> CbResult {
        self.loss_sum = None;
        self.hits = Hits::default();
        self.n = 0;
        self.start = Some(Instant::now());
        Ok(())
    }

    fn end(&mut self, learn: &LearnerState) -> CbResult {
        // Read the results first: on a GPU that waits for the phase's queued work, which its time includes.
        let total = match &self.loss_sum {
            Some(t) => t.item()?,
            None => 0.0,
        };
        let hits = self.hits.count()?;
        let secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let n = self.n.max(1) as f32;
        let rec = PhaseRecord {
            epoch: learn.epoch,
            train: learn.training,
            loss: total / n,
            acc: hits as f32 / n,
            n: self.n,
            secs,
            img_per_s: self.n as f64 / secs.max(1e-9),
            data_wait_secs: learn.data_wait.as_secs_f64(),
        };
        if !self.quiet {
            println!("{}", rec.line());
        }
        self.history.push(rec);
        Ok(())
    }
}

impl PhaseRecord {
    /// The chapter's line: `{epoch} {train!s:5} loss {loss:.4f} acc {acc:.4f} n {n} time {secs:.2f}s
    /// {img_per_s:.0f} img/s`, with Python's `True`/`False`.
    pub fn line(&self) -> String {
        let train = if self.train { "True" } else { "False" };
        format!(
            "{} {train:5} loss {:.4} acc {:.4} n {} time {:.2}s {:.0} img/s",
            self.epoch, self.loss, self.acc, self.n, self.secs, self.img_per_s
        )
    }
}

impl Callback for TrackResults {
    fn before_train(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.begin()
    }

    fn before_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.begin()
    }

    fn after_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }

    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        let n = learn.batch.len();
        let _no_grad = tiny_tensor::no_grad();
        let weighted = learn.loss.detach().mul_scalar(n as f32)?;
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum.add(&weighted)?,
            None => weighted,
        });
        self.hits.push(&learn.preds, &learn.batch.y)?;
        self.n += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_count_kept_predictions_across_flushes() {
        let mut hits = Hits::default();
        let mut want = 0;
        // More batches than are kept before counting, so both the flush and the final count run.
        for b in 0..HITS_PENDING + 5 {
            let preds = Tensor::from_vec(vec![0.1, 0.9, 0.8, 0.2], &[2, 2]).unwrap();
            let targets = [1, (b % 2) as u32];
            want += 1 + usize::from(b % 2 == 0);
            hits.push(&preds, &targets).unwrap();
        }
        assert_eq!(hits.count().unwrap(), want);
        assert_eq!(hits.count().unwrap(), want, "counting twice counts nothing twice");
    }
}

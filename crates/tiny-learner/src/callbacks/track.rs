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
}

/// Accumulates the loss (as a tensor, so no per-batch host synchronisation) and the accuracy of each
/// phase and prints the chapter's line at its end:
/// `0 True  loss 2.1234 acc 0.2345 n 9469 time 12.34s 767 img/s`.
#[derive(Debug, Default)]
pub struct TrackResults {
    /// One record per finished phase.
    pub history: Vec<PhaseRecord>,
    quiet: bool,
    loss_sum: Option<Tensor>,
    hits: usize,
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
        self.hits = 0;
        self.n = 0;
        self.start = Some(Instant::now());
        Ok(())
    }

    fn end(&mut self, learn: &LearnerState) -> CbResult {
        let secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let total = match &self.loss_sum {
            Some(t) => t.item()?,
            None => 0.0,
        };
        let n = self.n.max(1) as f32;
        let rec = PhaseRecord {
            epoch: learn.epoch,
            train: learn.training,
            loss: total / n,
            acc: self.hits as f32 / n,
            n: self.n,
            secs,
            img_per_s: self.n as f64 / secs.max(1e-9),
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
        let predicted = learn.preds.argmax(-1)?;
        self.hits += predicted.iter().zip(&learn.batch.y).filter(|(p, y)| p == y).count();
        self.n += n;
        Ok(())
    }
}

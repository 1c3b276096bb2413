//! `TrackResults`: the chapter's per-phase line, `epoch train? loss accuracy`, and its history.

use std::time::Instant;

use super::tally::PhaseTally;
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
    /// The fraction of items whose top prediction is the target: the `accuracy` metric, NaN when the learner
    /// has none. It is also among `metrics`; this field is the chapter's `acc`.
    pub acc: f32,
    /// Every metric of the learner by name, in order, measured over this phase.
    pub metrics: Vec<(String, f32)>,
    /// The number of items.
    pub n: usize,
    /// The phase's wall time in seconds.
    pub secs: f64,
    /// Items per second.
    pub img_per_s: f64,
    /// Seconds spent waiting for the loader's next batch (see `LearnerState::data_wait`).
    pub data_wait_secs: f64,
}

/// Accumulates the loss and the learner's metrics over each phase (as tensors and kept predictions, so without
/// a per-batch host synchronisation) and prints the chapter's line at its end:
/// `0 True  loss 2.1234 acc 0.2345 n 9469 time 12.34s 767 img/s`. Metrics besides accuracy follow `acc` by
/// name (`... acc 0.2345 error_rate 0.7655 n 9469 ...`).
#[derive(Debug, Default)]
pub struct TrackResults {
    /// One record per finished phase.
    pub history: Vec<PhaseRecord>,
    quiet: bool,
    tally: PhaseTally,
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

    fn begin(&mut self, learn: &LearnerState) -> CbResult {
        self.tally.begin(&learn.metrics);
        self.start = Some(Instant::now());
        Ok(())
    }

    fn end(&mut self, learn: &LearnerState) -> CbResult {
        // Read the results first: on a GPU that waits for the phase's queued work, which its time includes.
        let totals = self.tally.finish()?;
        let secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let acc = totals.metrics.iter().find(|(name, _)| name == "accuracy").map_or(f32::NAN, |m| m.1);
        let rec = PhaseRecord {
            epoch: learn.epoch,
            train: learn.training,
            loss: totals.loss.unwrap_or(0.0),
            acc,
            metrics: totals.metrics,
            n: totals.n,
            secs,
            img_per_s: totals.n as f64 / secs.max(1e-9),
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
    /// {img_per_s:.0f} img/s`, with Python's `True`/`False`. The other metrics follow `acc` as `{name} {value:.4f}`;
    /// `acc` is left out when it is NaN (no accuracy metric).
    pub fn line(&self) -> String {
        let train = if self.train { "True" } else { "False" };
        let mut line = format!("{} {train:5} loss {:.4}", self.epoch, self.loss);
        if !self.acc.is_nan() {
            line.push_str(&format!(" acc {:.4}", self.acc));
        }
        for (name, v) in self.metrics.iter().filter(|(name, _)| name != "accuracy") {
            line.push_str(&format!(" {name} {v:.4}"));
        }
        line.push_str(&format!(" n {} time {:.2}s {:.0} img/s", self.n, self.secs, self.img_per_s));
        line
    }

    /// The value of the metric called `name` (such as `error_rate`), if the learner measured it.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(n, _)| n == name).map(|m| m.1)
    }
}

impl Callback for TrackResults {
    fn runs_in_inference(&self) -> bool {
        false
    }

    fn before_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.begin(learn)
    }

    fn before_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.begin(learn)
    }

    fn after_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }

    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.tally.add_batch(learn)?;
        Ok(())
    }
}

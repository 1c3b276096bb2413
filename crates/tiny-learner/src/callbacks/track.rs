//! `TrackResults`: the chapter's per-phase line, `epoch train? loss accuracy`, printed from the Recorder's tally.

use crate::{Callback, CbResult, LearnerError, LearnerState, PhaseRecord};

/// Prints the chapter's line at the end of each training and validation phase:
/// `0 True  loss 2.1234 acc 0.2345 n 9469 time 12.34s 767 img/s`. Metrics besides accuracy follow `acc` by
/// name (`... acc 0.2345 error_rate 0.7655 n 9469 ...`).
///
/// The numbers are the [`Recorder`](crate::Recorder)'s, which every learner has by default and which tallies each
/// phase once (as tensors and kept predictions, so without a per-batch host synchronisation); this callback runs
/// after it (order 55), prints its last [`PhaseRecord`] and keeps a copy in `history`.
#[derive(Debug, Default)]
pub struct TrackResults {
    /// One record per finished phase.
    pub history: Vec<PhaseRecord>,
    quiet: bool,
    /// How many of the learner's phase records this tracker has printed.
    seen: usize,
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

    fn end(&mut self, learn: &LearnerState) -> CbResult {
        // A Recorder appends one record per phase; without one there is nothing new to print.
        let rec = match learn.phases.last() {
            Some(rec) if learn.phases.len() > self.seen => rec,
            _ => return Err(LearnerError::NeedsRecorder { callback: "TrackResults" }.into()),
        };
        self.seen = learn.phases.len();
        if !self.quiet {
            crate::progress::print_progress(&rec.line());
        }
        self.history.push(rec.clone());
        Ok(())
    }
}

impl Callback for TrackResults {
    fn order(&self) -> i32 {
        // After the Recorder (50), whose record of the phase it prints.
        55
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    /// The chapter's line shows the training accuracy, so the Recorder measures the metrics in training too.
    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        learn.train_metrics = true;
        Ok(())
    }

    fn after_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }

    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.end(learn)
    }
}

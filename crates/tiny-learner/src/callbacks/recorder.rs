//! `Recorder`: the one tally of every phase, per-batch losses and learning rates, per-epoch results in a
//! fastai-style table, a progress bar per phase, and the loss plot.

#[cfg(feature = "plot")]
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tiny_tensor::Tensor;

use super::tally::{PhaseTally, PhaseTotals};
#[cfg(feature = "plot")]
use crate::plot::{LinePlot, Series};
use crate::{Callback, CbResult, LearnerState, Result};

/// The results of one training or validation phase, as the `Recorder` tallies it and the chapter's
/// `TrackResults` prints it.
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

/// The results of one epoch, as the `Recorder` writes them into `LearnerState::history`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The mean training loss per item.
    pub train_loss: f32,
    /// The mean validation loss per item; `None` when validation did not run.
    pub valid_loss: Option<f32>,
    /// The learner's metrics on the validation set by name, in order; empty when validation did not run.
    pub metrics: Vec<(String, f32)>,
    /// The epoch's wall time in seconds.
    pub seconds: f64,
}

impl EpochStats {
    /// The validation value of the metric called `name` (such as `error_rate`), if it was measured.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(n, _)| n == name).map(|m| m.1)
    }

    /// The validation accuracy, if it was measured (the `accuracy` metric, the learner's default).
    pub fn accuracy(&self) -> Option<f32> {
        self.metric("accuracy")
    }
}

/// Records what happens during training, fastai's `Recorder` (with its `AvgLoss` and `AvgMetrics`) plus its
/// `ProgressCallback`. Every learner has one from [`Learner::new`](crate::Learner::new), quiet (no table), and
/// adding another replaces it.
///
/// It is the one tally of the loop: over each training and validation phase it adds up the loss weighted by
/// batch size and the learner's metrics (in training phases only with `LearnerState::train_metrics`), and appends a [`PhaseRecord`] to `LearnerState::phases`, which
/// `TrackResults` prints. Per training batch it keeps the loss (as a tensor until the phase ends, so no per-batch host
/// synchronisation) and the learning rate; per epoch the mean training loss, the validation loss, the learner's
/// metrics on the validation set (as fastai, which measures metrics on the training set only when asked) and
/// the wall time, which it appends to `LearnerState::history` and prints as a row of a fastai-style table, one
/// column per metric: `epoch train_loss valid_loss accuracy error_rate time`. Each phase shows an indicatif
/// progress bar on stderr, which stays hidden when stderr is not a terminal. It runs at order 50, after the
/// callbacks that change the loss and before those that read the history.
#[derive(Debug)]
pub struct Recorder {
    /// The loss of every training batch.
    pub losses: Vec<f32>,
    /// The learning rate of every training batch.
    pub lrs: Vec<f32>,
    /// The per-epoch results, as also written to the learner's history.
    pub epochs: Vec<EpochStats>,
    /// The training-batch count at the end of each epoch, to place validation losses on the plot.
    pub epoch_iters: Vec<usize>,
    show_table: bool,
    show_progress: bool,
    header_done: bool,
    metric_names: Vec<String>,
    pending: Vec<Tensor>,
    tally: PhaseTally,
    phase_start: Option<Instant>,
    train_loss: f32,
    valid: Option<PhaseTotals>,
    start: Option<Instant>,
    bar: Option<ProgressBar>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder that prints the table and shows progress bars on a terminal.
    pub fn new() -> Self {
        Recorder {
            losses: Vec::new(),
            lrs: Vec::new(),
            epochs: Vec::new(),
            epoch_iters: Vec::new(),
            show_table: true,
            show_progress: true,
            header_done: false,
            metric_names: Vec::new(),
            pending: Vec::new(),
            tally: PhaseTally::default(),
            phase_start: None,
            train_loss: f32::NAN,
            valid: None,
            start: None,
            bar: None,
        }
    }

    /// Turns the printed table on or off.
    pub fn show_table(mut self, on: bool) -> Self {
        self.show_table = on;
        self
    }

    /// Turns the progress bars on or off (they are hidden anyway when stderr is not a terminal).
    pub fn show_progress(mut self, on: bool) -> Self {
        self.show_progress = on;
        self
    }

    /// The names of the metric columns: the learner's metrics at the start of the last fit or validation.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// The width of a metric's column: its name and two spaces, and at least 10.
    fn width(name: &str) -> usize {
        (name.len() + 2).max(10)
    }

    /// The table's header line: `epoch  train_loss  valid_loss  ` then a column per metric, then `time`.
    pub fn header(&self) -> String {
        let mut out = format!("{:<7}{:<12}{:<12}", "epoch", "train_loss", "valid_loss");
        for name in &self.metric_names {
            out.push_str(&format!("{name:<w$}", w = Recorder::width(name)));
        }
        out.push_str("time");
        out
    }

    /// One table row, `-` for what was not measured.
    pub fn row(&self, s: &EpochStats) -> String {
        let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        let mut out = format!("{:<7}{:<12}{:<12}", s.epoch, format!("{:.6}", s.train_loss), opt(s.valid_loss));
        for name in &self.metric_names {
            out.push_str(&format!("{:<w$}", opt(s.metric(name)), w = Recorder::width(name)));
        }
        let secs = s.seconds.round() as u64;
        out.push_str(&format!("{:02}:{:02}", secs / 60, secs % 60));
        out
    }

    /// The whole table of the epochs recorded so far.
    pub fn table(&self) -> String {
        let mut out = self.header();
        for s in &self.epochs {
            out.push('\n');
            out.push_str(&self.row(s));
        }
        out
    }

    /// Writes a PNG of the training loss per batch and the validation loss per epoch.
    #[cfg(feature = "plot")]
    pub fn plot_loss(&self, path: &Path) -> Result<()> {
        let train = self.losses.iter().enumerate().map(|(i, &l)| (i as f64, l as f64)).collect();
        let valid = self
            .epochs
            .iter()
            .zip(&self.epoch_iters)
            .filter_map(|(s, &it)| s.valid_loss.map(|v| (it as f64, v as f64)))
            .collect();
        LinePlot::new("loss", "batch", "loss")
            .series(Series::line("train", train))
            .series(Series::line("valid", valid).with_markers())
            .save_png(path)
    }

    fn begin_phase(&mut self, learn: &LearnerState) {
        if !learn.training {
            self.metric_names = learn.metrics.iter().map(|m| m.name()).collect();
        }
        self.tally.begin(if learn.training && !learn.train_metrics { &[] } else { &learn.metrics });
        self.phase_start = Some(Instant::now());
        if self.show_progress {
            let bar = ProgressBar::with_draw_target(Some(learn.n_iter as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise}");
            if let Ok(style) = style {
                bar.set_style(style.progress_chars("=> "));
            }
            let phase = if learn.training { "train" } else { "valid" };
            bar.set_message(format!("epoch {} {phase}", learn.epoch));
            self.bar = Some(bar);
        }
    }

    /// Reads the phase's tally back and appends its record to `learn.phases`.
    fn end_phase(&mut self, learn: &mut LearnerState) -> Result<PhaseTotals> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        // Read the results first: on a GPU that waits for the phase's queued work, which its time includes.
        let totals = self.tally.finish()?;
        let secs = self.phase_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let acc = totals.metrics.iter().find(|(name, _)| name == "accuracy").map_or(f32::NAN, |m| m.1);
        learn.phases.push(PhaseRecord {
            epoch: learn.epoch,
            train: learn.training,
            loss: totals.loss.unwrap_or(0.0),
            acc,
            metrics: totals.metrics.clone(),
            n: totals.n,
            secs,
            img_per_s: totals.n as f64 / secs.max(1e-9),
            data_wait_secs: learn.data_wait.as_secs_f64(),
        });
        Ok(totals)
    }
}

impl Callback for Recorder {
    fn runs_in_inference(&self) -> bool {
        false
    }

    fn order(&self) -> i32 {
        50
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.metric_names = learn.metrics.iter().map(|m| m.name()).collect();
        Ok(())
    }

    fn before_epoch(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.start = Some(Instant::now());
        self.train_loss = f32::NAN;
        self.valid = None;
        Ok(())
    }

    fn before_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.begin_phase(learn);
        Ok(())
    }

    fn before_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.begin_phase(learn);
        Ok(())
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.tally.add_batch(learn)?;
        if learn.training {
            self.pending.push(learn.loss.detach());
            self.lrs.push(learn.opt.as_ref().map_or(learn.lr, |o| o.lr()));
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if learn.iter + 1 >= learn.n_iter
            && let Some(bar) = self.bar.take()
        {
            // Gone before the phase's after events, so lines printed there (TrackResults) stay clean.
            bar.finish_and_clear();
        }
        Ok(())
    }

    fn after_train(&mut self, learn: &mut LearnerState) -> CbResult {
        for t in self.pending.drain(..) {
            self.losses.push(t.item()?);
        }
        self.train_loss = self.end_phase(learn)?.loss.unwrap_or(f32::NAN);
        Ok(())
    }

    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.valid = Some(self.end_phase(learn)?).filter(|v| v.n > 0);
        Ok(())
    }

    fn after_cancel_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.tally.clear();
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let valid = self.valid.take();
        let stats = EpochStats {
            epoch: learn.epoch,
            train_loss: self.train_loss,
            valid_loss: valid.as_ref().and_then(|v| v.loss),
            metrics: valid.map(|v| v.metrics).unwrap_or_default(),
            seconds: self.start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        };
        if self.show_table {
            if !self.header_done {
                crate::progress::print_progress(&self.header());
                self.header_done = true;
            }
            crate::progress::print_progress(&self.row(&stats));
        }
        self.epoch_iters.push(self.losses.len());
        self.epochs.push(stats.clone());
        learn.history.push(stats);
        Ok(())
    }
}

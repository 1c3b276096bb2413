//! `Recorder`: per-batch losses and learning rates, per-epoch results in a fastai-style table, a
//! progress bar per phase, and the loss plot.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tiny_tensor::Tensor;

use super::track::Hits;
use crate::plot::{LinePlot, Series};
use crate::{Callback, CbResult, LearnerState, Result};

/// The results of one epoch, as the `Recorder` writes them into `LearnerState::history`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The mean training loss per item.
    pub train_loss: f32,
    /// The mean validation loss per item; `None` when validation did not run.
    pub valid_loss: Option<f32>,
    /// The validation accuracy; `None` when validation did not run.
    pub accuracy: Option<f32>,
    /// The epoch's wall time in seconds.
    pub seconds: f64,
}

/// The quantity that `EarlyStopping` and `SaveModel` watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Monitor {
    /// The validation loss; lower is better.
    #[default]
    ValidLoss,
    /// The validation accuracy; higher is better.
    Accuracy,
    /// The training loss; lower is better.
    TrainLoss,
}

impl Monitor {
    /// The monitored value of an epoch, if it was measured.
    pub fn value(self, stats: &EpochStats) -> Option<f32> {
        match self {
            Monitor::ValidLoss => stats.valid_loss,
            Monitor::Accuracy => stats.accuracy,
            Monitor::TrainLoss => Some(stats.train_loss),
        }
    }

    /// Whether `value` beats `best` by more than `min_delta` in this monitor's direction.
    pub fn improved(self, value: f32, best: Option<f32>, min_delta: f32) -> bool {
        match best {
            None => !value.is_nan(),
            Some(best) if self == Monitor::Accuracy => value > best + min_delta,
            Some(best) => value < best - min_delta,
        }
    }

    /// The column name, as in the table.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValidLoss => "valid_loss",
            Monitor::Accuracy => "accuracy",
            Monitor::TrainLoss => "train_loss",
        }
    }
}

/// Records what happens during training, fastai's `Recorder` plus its `ProgressCallback`.
///
/// Per training batch it keeps the loss (as a tensor until the phase ends, so no per-batch host
/// synchronisation) and the learning rate; per epoch the mean training loss, the validation loss and
/// accuracy and the wall time, which it appends to `LearnerState::history` and prints as a row of a
/// fastai-style table. Each phase shows an indicatif progress bar on stderr, which stays hidden when
/// stderr is not a terminal. It runs at order 50, after the callbacks that change the loss and before
/// those that read the history.
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
    pending: Vec<Tensor>,
    sum: Option<Tensor>,
    hits: Hits,
    n: usize,
    train_loss: f32,
    valid: Option<(f32, f32)>,
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
            pending: Vec::new(),
            sum: None,
            hits: Hits::default(),
            n: 0,
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

    /// The table's header line.
    pub fn header() -> String {
        format!("{:<7}{:<12}{:<12}{:<10}{}", "epoch", "train_loss", "valid_loss", "accuracy", "time")
    }

    /// One table row.
    pub fn row(s: &EpochStats) -> String {
        let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        let secs = s.seconds.round() as u64;
        format!(
            "{:<7}{:<12}{:<12}{:<10}{:02}:{:02}",
            s.epoch,
            format!("{:.6}", s.train_loss),
            opt(s.valid_loss),
            opt(s.accuracy),
            secs / 60,
            secs % 60
        )
    }

    /// The whole table of the epochs recorded so far.
    pub fn table(&self) -> String {
        let mut out = Recorder::header();
        for s in &self.epochs {
            out.push('\n');
            out.push_str(&Recorder::row(s));
        }
        out
    }

    /// Writes a PNG of the training loss per batch and the validation loss per epoch.
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
        self.sum = None;
        self.hits = Hits::default();
        self.n = 0;
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

    fn end_phase(&mut self) -> Result<(f32, f32)> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let total = match &self.sum {
            Some(t) => t.item()?,
            None => f32::NAN,
        };
        let n = self.n.max(1) as f32;
        Ok((total / n, self.hits.count()? as f32 / n))
    }
}

impl Callback for Recorder {
    fn order(&self) -> i32 {
        50
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
        let n = learn.batch.len();
        let _no_grad = tiny_tensor::no_grad();
        let loss = learn.loss.detach();
        let weighted = loss.mul_scalar(n as f32)?;
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum.add(&weighted)?,
            None => weighted,
        });
        self.n += n;
        if learn.training {
            self.pending.push(loss);
            self.lrs.push(learn.opt.as_ref().map_or(learn.lr, |o| o.lr()));
        } else {
            self.hits.push(&learn.preds, &learn.batch.y)?;
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

    fn after_train(&mut self, _learn: &mut LearnerState) -> CbResult {
        for t in self.pending.drain(..) {
            self.losses.push(t.item()?);
        }
        self.train_loss = self.end_phase()?.0;
        Ok(())
    }

    fn after_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.valid = Some(self.end_phase()?);
        Ok(())
    }

    fn after_cancel_validate(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.n = 0;
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let valid = self.valid.filter(|_| self.n > 0);
        let stats = EpochStats {
            epoch: learn.epoch,
            train_loss: self.train_loss,
            valid_loss: valid.map(|v| v.0),
            accuracy: valid.map(|v| v.1),
            seconds: self.start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        };
        if self.show_table {
            if !self.header_done {
                println!("{}", Recorder::header());
                self.header_done = true;
            }
            println!("{}", Recorder::row(&stats));
        }
        self.epoch_iters.push(self.losses.len());
        self.epochs.push(stats.clone());
        learn.history.push(stats);
        Ok(())
    }
}

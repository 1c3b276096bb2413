//! `JsonSummary`: one JSON line per run, the caller's settings followed by the Recorder's results, beside `CsvLogger`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Callback, CbResult, LearnerState, PhaseRecord, Result};

/// Times every fit and, when asked, writes one JSON object for the run: the caller's settings `C` (any
/// serialisable struct, whose fields come first in their order), then the [`FitResults`] read from the
/// Recorder's records in `LearnerState::phases`, then whatever the caller measured after the fit.
///
/// The results are read when the line is written, so a `learn.validate()` after the fit counts as the last
/// validation. Several fits (fastai's `fine_tune` is two) add up their times.
///
/// ```
/// use serde::Serialize;
/// use tiny_learner::{DataLoaders, InMemory, JsonSummary, Learner};
/// use tiny_nn::{Linear, cross_entropy};
/// use tiny_tensor::Tensor;
/// #[derive(Serialize)]
/// struct Settings {
///     lr: f32,
/// }
/// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
/// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 2).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
/// let cbs: Vec<Box<dyn tiny_learner::Callback>> = vec![Box::new(JsonSummary::new(Settings { lr: 0.1 }))];
/// let mut learn = Learner::new(Linear::new(2, 2).unwrap(), dls, cross_entropy, 0.1, cbs);
/// learn.fit(1).unwrap();
/// let line = learn.callback::<JsonSummary<Settings>>().unwrap().line(&learn, ()).unwrap();
/// assert!(line.starts_with("{\"lr\":0.1,\"train_loss\":"));
/// assert!(line.contains("\"valid_acc\":"));
/// ```
#[derive(Debug)]
pub struct JsonSummary<C> {
    /// The caller's settings, written first.
    pub config: C,
    fit_time: Duration,
    start: Option<Instant>,
}

/// What a run measured, as [`JsonSummary`] writes it: the last training phase's loss, the last validation's
/// loss, accuracy and metrics, and the training phases' speed and time spent waiting for data.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct FitResults {
    /// The mean loss of the last training phase.
    pub train_loss: Option<f32>,
    /// The mean loss of the last validation.
    pub valid_loss: Option<f32>,
    /// The accuracy of the last validation (NaN without the accuracy metric).
    pub valid_acc: Option<f32>,
    /// Every metric of the last validation, by name.
    pub metrics: BTreeMap<String, f32>,
    /// The wall time of the fits, in seconds.
    pub seconds: f64,
    /// Training items per second over every training phase.
    pub train_img_per_s: f64,
    /// Time the training phases waited for the loader, in seconds and as a share of their time.
    pub train_data_wait_s: f64,
    /// See `train_data_wait_s`.
    pub train_data_wait_pct: f64,
    /// The loader's share of each training phase, in percent: with the decode-once cache, the first epoch decodes
    /// and the later ones read memory.
    pub epoch_data_wait_pct: Vec<f64>,
}

impl FitResults {
    /// The results in the records `phases` of fits that took `seconds` in all.
    pub fn from_phases(phases: &[PhaseRecord], seconds: f64) -> Self {
        let train = phases.iter().rev().find(|r| r.train);
        let valid = phases.iter().rev().find(|r| !r.train);
        let trains = || phases.iter().filter(|r| r.train);
        let (n, secs, wait) = trains().fold((0, 0.0, 0.0), |(n, s, w), r| (n + r.n, s + r.secs, w + r.data_wait_secs));
        FitResults {
            train_loss: train.map(|r| r.loss),
            valid_loss: valid.map(|r| r.loss),
            valid_acc: valid.map(|r| r.acc),
            metrics: valid.map(|r| r.metrics.iter().cloned().collect()).unwrap_or_default(),
            seconds,
            train_img_per_s: n as f64 / f64::max(secs, 1e-9),
            train_data_wait_s: wait,
            train_data_wait_pct: 100.0 * wait / f64::max(secs, 1e-9),
            epoch_data_wait_pct: trains().map(|r| 100.0 * r.data_wait_secs / r.secs.max(1e-9)).collect(),
        }
    }
}

/// The line's three parts, flattened into one object in this order.
#[derive(Serialize)]
struct Line<'a, C, E> {
    #[serde(flatten)]
    config: &'a C,
    #[serde(flatten)]
    results: FitResults,
    #[serde(flatten)]
    extra: E,
}

impl<C: Serialize> JsonSummary<C> {
    /// A summary that starts with `config`.
    pub fn new(config: C) -> Self {
        JsonSummary { config, fit_time: Duration::ZERO, start: None }
    }

    /// The results of the fits so far.
    pub fn results(&self, learn: &LearnerState) -> FitResults {
        FitResults::from_phases(&learn.phases, self.fit_time.as_secs_f64())
    }

    /// The JSON line: the settings, the results, then `extra` (a struct whose fields follow, or `()`).
    ///
    /// # Errors
    /// [`crate::LearnerError::InvalidArgument`] when `C` or `extra` does not serialise to a JSON object.
    pub fn line(&self, learn: &LearnerState, extra: impl Serialize) -> Result<String> {
        let line = Line { config: &self.config, results: self.results(learn), extra };
        serde_json::to_string(&line)
            .map_err(|e| crate::LearnerError::InvalidArgument { what: "JsonSummary", msg: e.to_string() })
    }
}

impl<C: Serialize + 'static> Callback for JsonSummary<C> {
    fn name(&self) -> &str {
        "JsonSummary"
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.start = Some(Instant::now());
        Ok(())
    }

    fn after_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.fit_time += self.start.take().map_or(Duration::ZERO, |s| s.elapsed());
        Ok(())
    }
}

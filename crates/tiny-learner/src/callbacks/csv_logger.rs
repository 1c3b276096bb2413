//! `CsvLogger`: one CSV row per epoch from the history the `Recorder` writes.

use std::io::Write;
use std::path::PathBuf;

use crate::{Callback, CbResult, LearnerError, LearnerState};

/// fastai's `CSVLogger`: writes `epoch,train_loss,valid_loss,` then one column per metric of the learner, then
/// `time` (`epoch,train_loss,valid_loss,accuracy,time` with the default metrics) at the start of the fit (unless
/// appending to an existing file, for resumed fits) and a row after every epoch, flushed at once so that the
/// file is complete even if training stops abruptly. A value that was not measured is an empty field. Order
/// 61, after the `Recorder`.
#[derive(Debug, Clone)]
pub struct CsvLogger {
    /// Where the rows go.
    pub path: PathBuf,
    append: bool,
    metric_names: Vec<String>,
}

impl CsvLogger {
    /// Logs to `path`, replacing the file at the start of each fit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger { path: path.into(), append: false, metric_names: Vec::new() }
    }

    /// Appends to the file instead, writing the header only if the file is new.
    pub fn append(mut self) -> Self {
        self.append = true;
        self
    }

    fn write(&self, text: &str, append: bool) -> Result<(), LearnerError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&self.path)
            .map_err(LearnerError::io(&self.path))?;
        file.write_all(text.as_bytes()).map_err(LearnerError::io(&self.path))
    }
}

impl Callback for CsvLogger {
    fn runs_in_inference(&self) -> bool {
        false
    }

    fn order(&self) -> i32 {
        61
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.metric_names = learn.metrics.iter().map(|m| m.name()).collect();
        if !self.append || !self.path.exists() {
            let mut header = vec!["epoch", "train_loss", "valid_loss"];
            header.extend(self.metric_names.iter().map(String::as_str));
            header.push("time");
            self.write(&format!("{}\n", header.join(",")), false)?;
        }
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let s = learn.epoch_stats("CsvLogger")?;
        let opt = |v: Option<f32>| v.map_or(String::new(), |v| v.to_string());
        let mut row = vec![s.epoch.to_string(), s.train_loss.to_string(), opt(s.valid_loss)];
        row.extend(self.metric_names.iter().map(|name| opt(s.metric(name))));
        row.push(format!("{:.3}", s.seconds));
        self.write(&format!("{}\n", row.join(",")), true)?;
        Ok(())
    }
}

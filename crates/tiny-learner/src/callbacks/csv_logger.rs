//! `CsvLogger`: one CSV row per epoch from the history the `Recorder` writes.

use std::io::Write;
use std::path::PathBuf;

use crate::{Callback, CbResult, LearnerError, LearnerState};

/// fastai's `CSVLogger`: writes `epoch,train_loss,valid_loss,accuracy,time` at the start of the fit
/// (unless appending to an existing file, for resumed fits) and a row after every epoch, flushed at
/// once so that the file is complete even if training stops abruptly. Order 61, after the `Recorder`.
#[derive(Debug, Clone)]
pub struct CsvLogger {
    /// Where the rows go.
    pub path: PathBuf,
    append: bool,
}

/// The CSV header line.
pub const CSV_HEADER: &str = "epoch,train_loss,valid_loss,accuracy,time";

impl CsvLogger {
    /// Logs to `path`, replacing the file at the start of each fit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger { path: path.into(), append: false }
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
    fn order(&self) -> i32 {
        61
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        if !self.append || !self.path.exists() {
            self.write(&format!("{CSV_HEADER}\n"), false)?;
        }
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let s = learn.history.last().ok_or(LearnerError::NeedsRecorder { callback: "CsvLogger" })?;
        let opt = |v: Option<f32>| v.map_or(String::new(), |v| v.to_string());
        let row = format!("{},{},{},{},{:.3}\n", s.epoch, s.train_loss, opt(s.valid_loss), opt(s.accuracy), s.seconds);
        self.write(&row, true)?;
        Ok(())
    }
}

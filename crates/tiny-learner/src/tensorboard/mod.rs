//! TensorBoard's event files, written and read back: `EventWriter`, `read_events`, and the `TensorBoard` callback.
//!
//! An event file is a sequence of TFRecords (`record.rs`), each an `Event` protocol buffer (`proto.rs`): the
//! first holds only the file version, the others a step and a summary of tagged scalars or PNG images. TensorBoard
//! reads every file named `*tfevents*` under the folder it is pointed at.

mod proto;
mod record;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use proto::{Event, Value};
pub use record::{crc32c, masked_crc};

use crate::{Callback, CbResult, LearnerError, LearnerState, Result};

/// Writes one event file into a folder, as PyTorch's `SummaryWriter` does.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `dir` if needed and a new file in it, `events.out.tfevents.<seconds>.tiny.<pid>.<count>`, that starts
    /// with the file-version event.
    ///
    /// # Errors
    /// [`LearnerError::Io`] naming the folder or file that could not be made.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(LearnerError::io(dir))?;
        // A count within the process too, as PyTorch's writer has, so that two writers in one second never share a
        // name (which would truncate the first file).
        static WRITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.tiny.{}.{n}", now() as u64, std::process::id());
        let path = dir.join(name);
        let out = BufWriter::new(File::create(&path).map_err(LearnerError::io(&path))?);
        let mut w = EventWriter { path, out };
        w.write(&Event { wall_time: now(), step: 0, file_version: Some("brain.Event:2".into()), values: vec![] })?;
        Ok(w)
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event.
    ///
    /// # Errors
    /// [`LearnerError::Io`] naming the file.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        record::write_record(&mut self.out, &event.encode()).map_err(LearnerError::io(&self.path))
    }

    /// Writes scalars under their tags at `step`.
    ///
    /// # Errors
    /// As [`EventWriter::write`].
    pub fn scalars(&mut self, step: i64, values: &[(String, f32)]) -> Result<()> {
        let values = values.iter().map(|(t, v)| (t.clone(), Value::Scalar(*v))).collect();
        self.write(&Event { wall_time: now(), step, file_version: None, values })
    }

    /// Writes a PNG image (`width` x `height`) under `tag` at `step`.
    ///
    /// # Errors
    /// As [`EventWriter::write`].
    pub fn image(&mut self, step: i64, tag: &str, (width, height): (u32, u32), png: Vec<u8>) -> Result<()> {
        let values = vec![(tag.to_string(), Value::Image { width, height, png })];
        self.write(&Event { wall_time: now(), step, file_version: None, values })
    }

    /// Pushes what is buffered to the file, so that a running TensorBoard sees it.
    ///
    /// # Errors
    /// [`LearnerError::Io`] naming the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(LearnerError::io(&self.path))
    }
}

/// Reads every event of the file at `path`, checking each record's checksums.
///
/// # Errors
/// [`LearnerError::Io`] for an unreadable file, a record cut short or a checksum that does not match, or a message
/// that is not an event.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let mut file = File::open(path).map_err(LearnerError::io(path))?;
    let records = record::read_records(&mut file).map_err(LearnerError::io(path))?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Event::decode(r).map_err(|why| {
                LearnerError::io(path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("event {i}: {why}"),
                ))
            })
        })
        .collect()
}

/// fastai's `TensorBoardCallback`: for every training batch the smoothed loss (`train_loss`: fastai's exponential
/// moving average with weight 0.98, debiased, over the fit) and each parameter group's learning rate, momentum and
/// weight decay (`lr_0`, `mom_0`, `wd_0`, ...), and after every epoch the validation loss (`valid_loss`) and the
/// metrics by name, all at the count of training batches so far. The batches' losses are read (and the file
/// flushed) at the end of each epoch, so that a GPU is not waited for after every batch. Images (the confusion
/// matrix) go in with [`TensorBoard::writer`].
#[derive(Debug)]
pub struct TensorBoard {
    dir: PathBuf,
    writer: Option<EventWriter>,
    step: i64,
    /// This epoch's training batches, not yet written.
    pending: Vec<PendingBatch>,
    /// The smoothed loss's running average and the batches it has seen this fit.
    smooth: (f32, i32),
}

/// A training batch's step, loss (not yet read from its device) and hyper-parameters by tag.
type PendingBatch = (i64, tiny_tensor::Tensor, Vec<(String, f32)>);

impl TensorBoard {
    /// Logs into a new event file in `dir` (made when the fit begins).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TensorBoard { dir: dir.into(), writer: None, step: 0, pending: Vec::new(), smooth: (0.0, 0) }
    }

    /// The event file's writer, once the fit has begun, and the step it has reached.
    pub fn writer(&mut self) -> Option<(&mut EventWriter, i64)> {
        let step = self.step;
        self.writer.as_mut().map(|w| (w, step))
    }
}

impl Callback for TensorBoard {
    /// After the `Recorder` (50), so that an epoch's statistics are there.
    fn order(&self) -> i32 {
        55
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn before_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.smooth = (0.0, 0);
        if self.writer.is_none() {
            self.writer = Some(EventWriter::create(&self.dir)?);
        }
        Ok(())
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if self.writer.is_none() || !learn.training {
            return Ok(());
        }
        self.step += 1;
        let mut hypers = Vec::new();
        if let Some(opt) = &learn.opt {
            for (i, g) in opt.param_groups().iter().enumerate() {
                hypers.push((format!("lr_{i}"), g.lr));
                hypers.push((format!("mom_{i}"), g.momentum));
                hypers.push((format!("wd_{i}"), g.weight_decay));
            }
        }
        self.pending.push((self.step, learn.loss.detach(), hypers));
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.write_pending()?;
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        let s = learn.epoch_stats("TensorBoard")?;
        let mut values: Vec<(String, f32)> = s.valid_loss.map(|v| ("valid_loss".to_string(), v)).into_iter().collect();
        values.extend(s.metrics.iter().cloned());
        w.scalars(self.step, &values)?;
        w.flush()?;
        Ok(())
    }

    /// Also after a fit cancelled mid-epoch: the batches it trained are logged.
    fn after_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.write_pending()?;
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

impl TensorBoard {
    /// Writes the training batches logged since the last epoch ended.
    fn write_pending(&mut self) -> Result<()> {
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        const BETA: f32 = 0.98;
        for (step, loss, hypers) in self.pending.drain(..) {
            let loss = loss.try_to_vec()?.first().copied().unwrap_or(f32::NAN);
            let (avg, n) = &mut self.smooth;
            *avg = BETA * *avg + (1.0 - BETA) * loss;
            *n += 1;
            let mut values = vec![("train_loss".to_string(), *avg / (1.0 - BETA.powi(*n)))];
            values.extend(hypers);
            w.scalars(step, &values)?;
        }
        Ok(())
    }
}

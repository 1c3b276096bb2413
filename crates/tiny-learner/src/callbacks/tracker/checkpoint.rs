//! Checkpoints (model, optimizer, epoch and seed in one safetensors file), `SaveModel` and `load_checkpoint`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tiny_optim::OptimizerState;

use crate::{Callback, CbResult, ExportInfo, LearnerError, LearnerState, Monitor, Result};

const FORMAT: &str = "tiny-learner-checkpoint-1";

/// What a checkpoint says about where training stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// The epoch to resume at (the number of finished epochs).
    pub next_epoch: usize,
    /// The length of the fit that wrote it, so that schedules resume where they were.
    pub n_epochs: usize,
    /// The learner's seed (Mixup) and, by convention, the data loaders'.
    pub seed: u64,
    /// The learner's `lr`.
    pub lr: f32,
    /// Whether it holds an optimizer state.
    pub has_opt: bool,
    /// What the learner that wrote it was trained on (its normalisation statistics and item transform among it),
    /// when it knew (`Learner::with_export_info`); `None` for checkpoints written before tiny kept it.
    pub export_info: Option<ExportInfo>,
}

impl CheckpointInfo {
    /// Reads only the metadata of a checkpoint, e.g. to rebuild the data loaders with its seed.
    pub fn read(path: &Path) -> Result<Self> {
        let (_, meta) = tiny_nn::load_tensors(path)?;
        CheckpointInfo::from_metadata(path, &meta)
    }

    fn from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<Self> {
        let bad = |msg: String| LearnerError::Checkpoint { path: path.to_path_buf(), msg };
        if meta.get("tiny.format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("metadata tiny.format is not {FORMAT}")));
        }
        fn get<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str) -> std::result::Result<T, String> {
            let v = meta.get(key).ok_or_else(|| format!("metadata {key} is missing"))?;
            v.parse().map_err(|_| format!("metadata {key} has the unreadable value {v:?}"))
        }
        Ok(CheckpointInfo {
            next_epoch: get(meta, "tiny.next_epoch").map_err(bad)?,
            n_epochs: get(meta, "tiny.n_epochs").map_err(bad)?,
            seed: get(meta, "tiny.seed").map_err(bad)?,
            lr: get(meta, "tiny.lr").map_err(bad)?,
            has_opt: get(meta, "tiny.has_opt").map_err(bad)?,
            export_info: match meta.contains_key("tiny.normalize") {
                true => Some(ExportInfo::from_fields(meta).map_err(bad)?),
                false => None,
            },
        })
    }
}

/// Hyper-parameters to set on a resumed fit in place of the checkpoint's: `None` keeps the saved value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    /// The learning rate of every group (and the learner's `lr`).
    pub lr: Option<f32>,
    /// SGD's momentum, or Adam's `beta1`, of every group.
    pub momentum: Option<f32>,
    /// The weight decay of every group.
    pub weight_decay: Option<f32>,
}

/// An error unless a file can be written at `path`: it is not a folder, and its folder exists and takes a new file
/// (probed with an empty hidden file, removed again). Call it on every output path before a long run, so that a typo or a read-only folder
/// fails at once, naming the path, instead of after the work whose result it was to hold.
///
/// # Errors
/// [`LearnerError::Io`] naming `path`.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a folder; give a file name in it");
        return Err(LearnerError::io(path)(source));
    }
    let folder = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let probe = folder.join(format!(".{name}.probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(LearnerError::io(path))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks that the file system under `path` has `bytes` free for it (the size of the export or checkpoint it will
/// be), so that a full disk is found before a fit rather than after it. Where the free space cannot be read (not a
/// Unix system, a folder that does not exist yet) nothing is refused.
///
/// # Errors
/// [`LearnerError::Io`] naming the path, what it needs and what is free.
pub fn check_space(path: &Path, bytes: u64) -> Result<()> {
    let Some(free) = free_bytes(path) else { return Ok(()) };
    if free >= bytes {
        return Ok(());
    }
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let why = format!("it needs about {:.1} MiB and its file system has {:.1} MiB free", mib(bytes), mib(free));
    Err(LearnerError::io(path)(std::io::Error::new(std::io::ErrorKind::StorageFull, why)))
}

/// The bytes free to an unprivileged user on the file system that holds `path`'s folder.
#[cfg(unix)]
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let folder = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `name` is a NUL-terminated path and `st` a writable statvfs, which the call fills when it returns 0.
    let st = unsafe {
        if libc::statvfs(name.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    // The fields are u64 on 64-bit Linux and narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Some(blocks.saturating_mul(size))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> Option<u64> {
    None
}

/// An error naming the first of `tensors` that holds a NaN or an infinity, so that nothing non-finite is written to
/// the checkpoint or export at `path`.
pub(crate) fn check_finite(path: &Path, tensors: &[(String, tiny_tensor::Tensor)]) -> Result<()> {
    for (name, t) in tensors {
        let count = t.try_to_vec()?.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(LearnerError::NonFiniteCheckpoint { path: path.to_path_buf(), count, first: name.clone() });
        }
    }
    Ok(())
}

impl LearnerState {
    /// Sets the hyper-parameters given in `o` on every group of the optimizer, or of the optimizer state a checkpoint
    /// left for the next fit, and the learning rate on the learner: the way to change them on a resumed fit, since
    /// [`load_checkpoint`](Self::load_checkpoint) restores them as saved. Returns each one changed as
    /// `(name, checkpoint's value in the first group, new value)`.
    pub fn override_hyper(&mut self, o: Overrides) -> Vec<(&'static str, f32, f32)> {
        let mut changed = Vec::new();
        let mut note = |name, old: f32, new: f32| {
            if old != new && !changed.iter().any(|(n, _, _)| *n == name) {
                changed.push((name, old, new));
            }
        };
        if let Some(lr) = o.lr {
            note("lr", self.lr, lr);
            self.lr = lr;
        }
        let mut set = |lr: &mut f32, momentum: &mut f32, wd: &mut f32| {
            for (field, value, name) in
                [(lr, o.lr, "lr"), (momentum, o.momentum, "momentum"), (wd, o.weight_decay, "wd")]
            {
                if let Some(v) = value {
                    note(name, *field, v);
                    *field = v;
                }
            }
        };
        if let Some(state) = self.pending_opt_state.as_mut() {
            for g in &mut state.groups {
                set(&mut g.lr, &mut g.momentum, &mut g.weight_decay);
            }
        }
        if let Some(opt) = self.opt.as_mut() {
            for g in opt.param_groups_mut() {
                set(&mut g.lr, &mut g.momentum, &mut g.weight_decay);
            }
        }
        changed
    }

    /// Writes the model's parameters and buffers (prefixed `model.`), the optimizer's state tensors
    /// (prefixed `opt.`), each callback's state tensors (`cb.NAME.`) and, as metadata, the optimizer's numbers,
    /// `next_epoch`, `n_epochs`, the seed, `lr` and the callbacks' values (`tiny.cb.NAME.`), atomically (a
    /// temporary file renamed into place).
    ///
    /// # Errors
    /// [`LearnerError::NonFiniteCheckpoint`] when a weight or optimizer value is NaN or infinite: a diverged fit
    /// never overwrites a good checkpoint.
    pub fn save_checkpoint(&self, path: &Path, next_epoch: usize) -> Result<()> {
        let mut tensors: Vec<_> = self.model.state_dict().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        let mut meta = HashMap::from([
            ("tiny.format".to_string(), FORMAT.to_string()),
            ("tiny.next_epoch".to_string(), next_epoch.to_string()),
            ("tiny.n_epochs".to_string(), self.n_epochs.to_string()),
            ("tiny.seed".to_string(), self.seed.to_string()),
            ("tiny.lr".to_string(), self.lr.to_string()),
            ("tiny.has_opt".to_string(), self.opt.is_some().to_string()),
        ]);
        if let Some(info) = &self.export_info {
            meta.extend(info.fields());
        }
        if let Some(opt) = &self.opt {
            let state = opt.state_dict()?;
            meta.extend(state.to_metadata());
            tensors.extend(state.tensors.into_iter().map(|(n, t)| (format!("opt.{n}"), t)));
        }
        for (cb, state) in &self.callback_state {
            tensors.extend(state.tensors.iter().map(|(n, t)| (format!("cb.{cb}.{n}"), t.clone())));
            meta.extend(state.values.iter().map(|(k, v)| (format!("tiny.cb.{cb}.{k}"), v.clone())));
            meta.insert(format!("tiny.cb.{cb}"), String::new());
        }
        check_finite(path, &tensors)?;
        tiny_nn::save_tensors(path, &tensors, &meta)?;
        Ok(())
    }

    /// Loads a checkpoint: the model's tensors at once (all names and shapes are checked first), the
    /// seed and `lr`, and the optimizer state, which is loaded into the current optimizer if there is
    /// one and kept for the optimizer the next `fit` creates. Resume with
    /// `learn.fit_from(info.n_epochs, info.next_epoch)`.
    ///
    /// The checkpoint wins: every hyper-parameter comes back as saved (each group's learning rate, momentum and
    /// weight decay, the seed), so that a resumed fit continues exactly as the uninterrupted one. To change one on
    /// resume, call [`LearnerState::override_hyper`] after this.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<CheckpointInfo> {
        let (tensors, meta) = tiny_nn::load_tensors(path)?;
        let info = CheckpointInfo::from_metadata(path, &meta)?;
        let Parts { model, opt, callbacks } = split(tensors, &meta).map_err(|name| {
            let msg = format!("tensor {name} is neither model.*, opt.* nor a callback's cb.*");
            LearnerError::Checkpoint { path: path.to_path_buf(), msg }
        })?;
        let opt_state = if info.has_opt {
            let pairs: Vec<(String, String)> = meta.into_iter().collect();
            Some(OptimizerState::from_metadata(&pairs, opt)?)
        } else {
            None
        };
        tiny_nn::load_state_dict(self.model.as_ref(), model, true).map_err(|e| match e {
            tiny_nn::NnError::StateDict(mut m) => {
                m.path = Some(path.to_path_buf());
                tiny_nn::NnError::StateDict(m)
            }
            e => e,
        })?;
        if let (Some(opt), Some(state)) = (self.opt.as_mut(), &opt_state) {
            opt.load_state_dict(state)?;
        }
        self.pending_opt_state = opt_state;
        self.callback_state = callbacks;
        self.seed = info.seed;
        self.lr = info.lr;
        Ok(info)
    }
}

/// A checkpoint's tensors by owner: the model's (`model.*`), the optimizer's (`opt.*`) and each callback's
/// (`cb.NAME.*`), each under its own name.
struct Parts {
    model: Vec<(String, tiny_tensor::Tensor)>,
    opt: Vec<(String, tiny_tensor::Tensor)>,
    callbacks: std::collections::BTreeMap<String, crate::CallbackState>,
}

/// Splits a checkpoint's tensors by owner, the callbacks' values read from `meta`; `Err` names a tensor that
/// belongs to no one.
fn split(
    tensors: Vec<(String, tiny_tensor::Tensor)>,
    meta: &HashMap<String, String>,
) -> std::result::Result<Parts, String> {
    let mut parts = Parts { model: Vec::new(), opt: Vec::new(), callbacks: callback_states(meta) };
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            parts.model.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix("opt.") {
            parts.opt.push((n.to_string(), t));
        } else if let Some((cb, n)) = name.strip_prefix("cb.").and_then(|rest| rest.split_once('.'))
            && let Some(state) = parts.callbacks.get_mut(cb)
        {
            state.tensors.push((n.to_string(), t));
        } else {
            return Err(name);
        }
    }
    Ok(parts)
}

/// The callbacks' states a checkpoint's metadata marks (`tiny.cb.NAME`), with their values (`tiny.cb.NAME.KEY`)
/// and as yet no tensors.
fn callback_states(meta: &HashMap<String, String>) -> std::collections::BTreeMap<String, crate::CallbackState> {
    let mut callbacks: std::collections::BTreeMap<String, crate::CallbackState> = meta
        .keys()
        .filter_map(|k| k.strip_prefix("tiny.cb."))
        .filter(|rest| !rest.contains('.'))
        .map(|cb| (cb.to_string(), crate::CallbackState::default()))
        .collect();
    for (key, value) in meta {
        let Some(rest) = key.strip_prefix("tiny.cb.") else { continue };
        if let Some((cb, k)) = rest.split_once('.')
            && let Some(state) = callbacks.get_mut(cb)
        {
            state.values.insert(k.to_string(), value.clone());
        }
    }
    callbacks
}

/// fastai's `SaveModelCallback`: after every epoch, or only when the monitored value improves, writes
/// a checkpoint that resumes at the next epoch; in the second case the best weights are loaded back at the end.
/// A `{epoch}` in the path is replaced by the epoch number. Order 62: after the `Recorder` and the logger, before `EarlyStopping`.
#[derive(Debug, Clone)]
pub struct SaveModel {
    path: PathBuf,
    every_epoch: bool,
    monitor: Monitor,
    min_delta: f32,
    best: Option<f32>,
    lower_is_better: bool,
    /// The files written so far, in order.
    pub saved: Vec<PathBuf>,
}

impl SaveModel {
    /// Saves after every epoch.
    pub fn every_epoch(path: impl Into<PathBuf>) -> Self {
        SaveModel {
            path: path.into(),
            every_epoch: true,
            monitor: Monitor::ValidLoss,
            min_delta: 0.0,
            best: None,
            lower_is_better: true,
            saved: Vec::new(),
        }
    }

    /// Saves whenever `monitor` improves on its best value of the fit; a monitored metric must be one of the
    /// learner's (`before_fit` fails with [`LearnerError::UnknownMetric`] otherwise), and its direction says what
    /// is better.
    pub fn best(path: impl Into<PathBuf>, monitor: Monitor) -> Self {
        SaveModel { every_epoch: false, monitor, ..SaveModel::every_epoch(path) }
    }

    /// The file for `epoch`.
    pub fn path_for(&self, epoch: usize) -> PathBuf {
        PathBuf::from(self.path.to_string_lossy().replace("{epoch}", &epoch.to_string()))
    }
}

impl Callback for SaveModel {
    fn runs_in_inference(&self) -> bool {
        false
    }

    fn order(&self) -> i32 {
        62
    }

    /// Checks that the checkpoint's folder takes files before the first batch is read, so that a bad `--save` fails
    /// at once rather than after a whole epoch.
    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.best = None;
        if !self.every_epoch {
            self.lower_is_better = self.monitor.lower_is_better(&learn.metrics)?;
        }
        check_writable(&self.path_for(learn.epoch))?;
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        let save = if self.every_epoch {
            true
        } else {
            let stats = learn.epoch_stats("SaveModel")?;
            match self.monitor.value(stats) {
                Some(v) if Monitor::improved(self.lower_is_better, v, self.best, self.min_delta) => {
                    self.best = Some(v);
                    true
                }
                _ => false,
            }
        };
        if save {
            let path = self.path_for(learn.epoch);
            learn.save_checkpoint(&path, learn.epoch + 1)?;
            self.saved.push(path);
        }
        Ok(())
    }

    /// With [`SaveModel::best`], puts the best epoch's weights back into the model at the end of the fit, as
    /// fastai's `SaveModelCallback` loads its file in `after_fit` (the model only, like its `with_opt=False`), and
    /// the callbacks' states of that epoch (the [`Ema`](crate::Ema) average that its validation measured).
    fn after_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        if self.every_epoch {
            return Ok(());
        }
        let Some(best) = self.saved.last() else { return Ok(()) };
        let (tensors, meta) = tiny_nn::load_tensors(best)?;
        let Parts { model, callbacks, .. } = split(tensors, &meta).map_err(|name| LearnerError::Checkpoint {
            path: best.clone(),
            msg: format!("tensor {name} is neither model.*, opt.* nor a callback's cb.*"),
        })?;
        tiny_nn::load_state_dict(learn.model.as_ref(), model, true)?;
        for (cb, state) in callbacks {
            learn.callback_state.insert(cb, state);
        }
        Ok(())
    }
}

//! `Learner::export` and `load_learner`: one safetensors file with the weights and all that predicting needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tiny_data::{ItemTransform, Normalize, ResizeMethod};
use tiny_tensor::Device;

use tiny_data::DataLoaders;

use crate::{Arch, Head, Learner, LearnerError, Result, SetupLearner};

/// The value of `tiny.format` in an export; another number is another layout, refused by [`load_learner`].
pub const EXPORT_FORMAT: &str = "tiny-learner-export-1";

/// What an export records besides the weights: enough to rebuild the model and to turn an image file into a class.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportInfo {
    /// The architecture, one of [`ARCHS`](crate::ARCHS).
    pub arch: String,
    /// The class names, indexed by the model's outputs.
    pub vocab: Vec<String>,
    /// The per-channel statistics the inputs were normalised with.
    pub normalize: Normalize,
    /// How each image was fitted to the model's input (its deterministic part: size and method).
    pub item_tfm: ItemTransform,
    /// The model's head: the architecture's own, or fastai's `create_head` (written as `tiny.head` only then, so
    /// exports of the architectures' own heads are as before).
    pub head: Head,
    /// Whether the model is multi-label (a sigmoid per class, trained with binary cross entropy); written as
    /// `tiny.multi_label` only then.
    pub multi_label: bool,
    /// A multi-label prediction's threshold: the classes whose probability exceeds it are predicted (fastai's
    /// `thresh`, 0.5 by default).
    pub thresh: f32,
}

impl ExportInfo {
    /// The information for `arch` trained on `vocab`'s classes, with these statistics and item transform.
    pub fn new(arch: &str, vocab: &[String], normalize: Normalize, item_tfm: ItemTransform) -> Self {
        let item_tfm = item_tfm.deterministic();
        ExportInfo {
            arch: arch.to_owned(),
            vocab: vocab.to_vec(),
            normalize,
            item_tfm,
            head: Head::Own,
            multi_label: false,
            thresh: crate::DEFAULT_THRESH,
        }
    }

    /// The same information for a multi-label model whose predictions are the classes above `thresh`.
    pub fn with_multi_label(mut self, thresh: f32) -> Self {
        self.multi_label = true;
        self.thresh = thresh;
        self
    }

    /// The same information for a model that ends in `head`.
    pub fn with_head(mut self, head: Head) -> Self {
        self.head = head;
        self
    }

    /// What the export at `path` was trained on, or `None` when the file is not a tiny export (a PyTorch
    /// state_dict, say), so that `--init` from an export normalises as its model was trained.
    ///
    /// # Errors
    /// When the file cannot be read as safetensors, or is an export whose metadata is unreadable.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let (_, meta) = tiny_nn::load_tensors(path)?;
        match meta.get("tiny.format").map(String::as_str) {
            Some(EXPORT_FORMAT) => Self::from_metadata(path, &meta).map(Some),
            _ => Ok(None),
        }
    }

    /// The number of classes.
    pub fn n_classes(&self) -> usize {
        self.vocab.len()
    }

    /// The export's metadata entries.
    fn to_metadata(&self) -> HashMap<String, String> {
        let mut meta = self.fields();
        meta.insert("tiny.format".to_owned(), EXPORT_FORMAT.to_owned());
        meta.insert("tiny.version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        meta
    }

    /// What the learner was trained on, as metadata entries: an export's, and a checkpoint's too, so that a resumed
    /// fit normalises as the one that wrote it did.
    pub(crate) fn fields(&self) -> HashMap<String, String> {
        let method = match self.item_tfm.method {
            ResizeMethod::Squash => "squash",
            ResizeMethod::CenterCrop => "center_crop",
        };
        let mut fields = HashMap::from([
            ("tiny.arch".to_owned(), self.arch.clone()),
            ("tiny.n_classes".to_owned(), self.n_classes().to_string()),
            ("tiny.vocab".to_owned(), json!(self.vocab).to_string()),
            ("tiny.normalize".to_owned(), json!({"mean": self.normalize.mean, "std": self.normalize.std}).to_string()),
            ("tiny.item_tfm".to_owned(), json!({"size": self.item_tfm.size, "method": method}).to_string()),
        ]);
        if self.head != Head::Own {
            fields.insert("tiny.head".to_owned(), self.head.name().to_owned());
        }
        if self.multi_label {
            fields.insert("tiny.multi_label".to_owned(), json!({"thresh": self.thresh}).to_string());
        }
        fields
    }

    /// Reads the metadata of an export at `path`, saying what the file is when it is not one.
    fn from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<Self> {
        let bad = |msg: String| LearnerError::Export { path: path.to_path_buf(), msg };
        match meta.get("tiny.format").map(String::as_str) {
            Some(EXPORT_FORMAT) => {}
            Some(f) if f.starts_with("tiny-learner-checkpoint") => {
                return Err(bad(format!(
                    "it is a training checkpoint ({f}), not an export; resume from it with --resume, or export \
                     a model with `train --export PATH` or Learner::export"
                )));
            }
            Some(f) if f.starts_with("tiny-learner-export") => {
                let by = meta.get("tiny.version").map_or(String::new(), |v| format!(" (written by tiny {v})"));
                return Err(bad(format!(
                    "its format {f}{by} is not the one this tiny ({}) reads, {EXPORT_FORMAT}",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            Some(f) => return Err(bad(format!("its metadata tiny.format is {f:?}, not {EXPORT_FORMAT}"))),
            None => {
                return Err(bad(
                    "it holds tensors but no export metadata: a plain state_dict or weights file (load it with \
                     --init or tiny_nn::load_state_dict_file instead)"
                        .into(),
                ));
            }
        }
        Self::from_fields(meta).map_err(bad)
    }

    /// Reads the entries [`ExportInfo::fields`] wrote, or says which one is missing or unreadable.
    pub(crate) fn from_fields(meta: &HashMap<String, String>) -> std::result::Result<Self, String> {
        let bad = |msg: String| msg;
        let get = |key: &str| meta.get(key).ok_or_else(|| bad(format!("metadata {key} is missing")));
        let json = |key: &str| -> std::result::Result<Value, String> {
            serde_json::from_str(get(key)?).map_err(|e| bad(format!("metadata {key} is not valid JSON: {e}")))
        };
        let unreadable = |key: &str| bad(format!("metadata {key} has an unreadable value"));
        let arch = get("tiny.arch")?.clone();
        let vocab: Vec<String> = serde_json::from_value(json("tiny.vocab")?).map_err(|_| unreadable("tiny.vocab"))?;
        let n_classes: usize = get("tiny.n_classes")?.parse().map_err(|_| unreadable("tiny.n_classes"))?;
        if n_classes != vocab.len() {
            return Err(bad(format!("it says {n_classes} classes but names {}", vocab.len())));
        }
        let norm = json("tiny.normalize")?;
        let three = |v: &Value| -> Option<[f32; 3]> {
            let v: Vec<f32> = serde_json::from_value(v.clone()).ok()?;
            v.try_into().ok()
        };
        let (mean, std) = (three(&norm["mean"]), three(&norm["std"]));
        let (Some(mean), Some(std)) = (mean, std) else { return Err(unreadable("tiny.normalize")) };
        let tfm = json("tiny.item_tfm")?;
        let size = tfm["size"].as_u64().and_then(|s| u32::try_from(s).ok()).filter(|&s| s > 0);
        let method = match tfm["method"].as_str() {
            Some("squash") => Some(ResizeMethod::Squash),
            Some("center_crop") => Some(ResizeMethod::CenterCrop),
            _ => None,
        };
        let (Some(size), Some(method)) = (size, method) else { return Err(unreadable("tiny.item_tfm")) };
        let item_tfm = ItemTransform { method, ..ItemTransform::squash(size) };
        let head = match meta.get("tiny.head") {
            Some(h) => h.parse().map_err(|_| unreadable("tiny.head"))?,
            None => Head::Own,
        };
        let (multi_label, thresh) = match meta.get("tiny.multi_label") {
            None => (false, crate::DEFAULT_THRESH),
            Some(_) => {
                let thresh = json("tiny.multi_label")?["thresh"].as_f64().map(|t| t as f32);
                (true, thresh.filter(|t| t.is_finite()).ok_or_else(|| unreadable("tiny.multi_label"))?)
            }
        };
        Ok(ExportInfo { arch, vocab, normalize: Normalize { mean, std }, item_tfm, head, multi_label, thresh })
    }
}

impl Learner {
    /// Tells the learner what it was trained on, so that it can [`predict`](Learner::predict) files and
    /// [`export`](Learner::export) itself.
    pub fn with_export_info(mut self, info: ExportInfo) -> Self {
        self.state_mut().export_info = Some(info);
        self
    }

    /// The learner's [`ExportInfo`], or an error saying that `what` needs it.
    pub(crate) fn export_info(&self, what: &'static str) -> Result<&ExportInfo> {
        self.state().export_info.as_ref().ok_or_else(|| LearnerError::InvalidArgument {
            what,
            msg: "the learner does not know its classes and item transform: give them with with_export_info, or \
                  load the learner with load_learner"
                .into(),
        })
    }

    /// fastai's `learn.export(path)`: writes the model's parameters and buffers (under their module names, so the
    /// file is also a plain state_dict) and the [`ExportInfo`] as metadata, atomically, into one safetensors file.
    /// The optimizer is left out: an export is for predicting, a checkpoint for resuming.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] without export information, or when it is not multi-label (or its
    /// threshold not in [0, 1]) for multi-label loaders; [`LearnerError::NonFiniteCheckpoint`] when a weight is NaN
    /// or infinite (nothing is written), or the write's own error.
    pub fn export(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let info = self.export_info("export")?;
        let bad = |msg: String| LearnerError::InvalidArgument { what: "export", msg };
        if info.multi_label && !(0.0..=1.0).contains(&info.thresh) {
            return Err(bad(format!("the multi-label threshold {} is not a probability in [0, 1]", info.thresh)));
        }
        if self.state().dls.multi_label() && !info.multi_label {
            return Err(bad(
                "the loaders are multi-label but the export information is not; a loaded model would predict one \
                 class by softmax: give ExportInfo::with_multi_label(thresh)"
                    .into(),
            ));
        }
        let tensors = self.state().model.state_dict();
        crate::callbacks::check_finite(path, &tensors)?;
        tiny_nn::save_tensors(path, &tensors, &info.to_metadata())?;
        Ok(())
    }

    /// [`Learner::export`] to `path`, and when that write fails (a full disk, a folder gone, no permission), the same
    /// export into `fallback_dir` (named after `path`, with the process id), so that a trained model is not lost with
    /// the file. Returns where the model went and, after a fallback, why `path` failed.
    ///
    /// # Errors
    /// What [`Learner::export`] refuses before writing anything (no export information, a non-finite weight), and
    /// [`LearnerError::Export`] naming both failures when the fallback cannot be written either.
    pub fn export_or_fallback(&self, path: &Path, fallback_dir: &Path) -> Result<(PathBuf, Option<LearnerError>)> {
        let first = match self.export(path) {
            Ok(()) => return Ok((path.to_path_buf(), None)),
            Err(e @ (LearnerError::InvalidArgument { .. } | LearnerError::NonFiniteCheckpoint { .. })) => {
                return Err(e);
            }
            Err(e) => e,
        };
        let stem = path.file_stem().map_or("export".into(), |s| s.to_string_lossy().into_owned());
        let fallback = fallback_dir.join(format!("{stem}-{}.safetensors", std::process::id()));
        match self.export(&fallback) {
            Ok(()) => Ok((fallback, Some(first))),
            Err(second) => Err(LearnerError::Export {
                path: path.to_path_buf(),
                msg: format!("{first}; the fallback {} could not be written either: {second}", fallback.display()),
            }),
        }
    }
}

/// fastai's `load_learner(path)`: rebuilds, from an export alone, a learner that predicts on `device` without the
/// data it was trained on. It has the exported architecture with its weights, the normalisation and item transform
/// it was trained with (in a [`SetupLearner`]), the class names, and no batches of its own.
///
/// # Errors
/// [`LearnerError::Export`] saying what the file is when it is not an export (a training checkpoint, a plain
/// state_dict, an export of another format, truncated or not safetensors at all), or when its weights are not
/// those of the architecture it names.
pub fn load_learner(path: impl AsRef<Path>, device: Device) -> Result<Learner> {
    let path = path.as_ref();
    let bad = |msg: String| LearnerError::Export { path: path.to_path_buf(), msg };
    let (tensors, meta) = tiny_nn::load_tensors(path).map_err(|e| match e {
        tiny_nn::NnError::Io { .. } => LearnerError::from(e),
        e => bad(format!("it is truncated or not a safetensors file ({e})")),
    })?;
    let info = ExportInfo::from_metadata(path, &meta)?;
    let arch = Arch::named(&info.arch).map_err(|e| bad(e.to_string()))?;
    let model = arch.build_with(info.n_classes(), info.head)?;
    tiny_nn::load_state_dict(model.as_ref(), tensors, true).map_err(|e| {
        bad(format!("its weights are not those of {} with {} classes: {e}", info.arch, info.n_classes()))
    })?;
    // An image size no machine can predict at (an edited export, say) is an error naming the export, not an abort.
    crate::memory::check_inference_memory(model.as_ref(), info.item_tfm.size, crate::TEST_BS)
        .map_err(|e| bad(format!("its item transform resizes to {} px: {e}", info.item_tfm.size)))?;
    let setup = SetupLearner::normalize(device, info.normalize.mean, info.normalize.std);
    // No batches, but targets of the export's kind, so that the learner knows it is multi-label.
    let empty = crate::inference::no_batches(info.multi_label.then_some(info.n_classes()))?;
    let dls = DataLoaders::new(empty.clone(), empty);
    let loss_func = if info.multi_label { tiny_nn::bce_with_logits_flat } else { tiny_nn::cross_entropy };
    let mut learn = Learner::new(model, dls, loss_func, 0.0, vec![Box::new(setup)]).with_export_info(info);
    learn.state_mut().model.to_device(device)?;
    Ok(learn)
}

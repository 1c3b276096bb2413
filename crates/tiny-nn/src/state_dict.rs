//! PyTorch's `state_dict` in and out: strict and non-strict loading, every mismatch in one error, and pretrained bodies.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tiny_tensor::Tensor;

use crate::{Module, NnError, Result, load_tensors, save_tensors};

/// What a non-strict load left out, PyTorch's `_IncompatibleKeys`: the module's keys the state did not
/// hold (left as they were) and the state's keys the module does not have (ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Keys of the module with no value in the state, sorted.
    pub missing_keys: Vec<String>,
    /// Keys of the state that the module does not have, sorted.
    pub unexpected_keys: Vec<String>,
}

/// A key whose tensor has one shape in the state and another in the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The dotted name.
    pub key: String,
    /// The shape in the state (the file).
    pub state: Vec<usize>,
    /// The shape in the module.
    pub module: Vec<usize>,
}

/// Every way a state_dict failed to fit a module, gathered in one pass so that one error names all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDictMismatch {
    /// The file the state came from, if any.
    pub path: Option<PathBuf>,
    /// Module keys the state lacks (an error only in a strict load).
    pub missing: Vec<String>,
    /// State keys the module lacks (an error only in a strict load).
    pub unexpected: Vec<String>,
    /// Keys present on both sides with different shapes (always an error, as in PyTorch).
    pub mismatched: Vec<ShapeMismatch>,
}

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} does not fit the module:", p.display())?,
            None => write!(f, "the state_dict does not fit the module:")?,
        }
        let count = |n: usize, what: &str| format!(" {n} {what}{}", if n == 1 { "" } else { "s" });
        let shapes: Vec<String> = self
            .mismatched
            .iter()
            .map(|m| format!("{}: {:?} in the state, {:?} in the module", m.key, m.state, m.module))
            .collect();
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} ({})", count(self.missing.len(), "missing key"), self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("{} ({})", count(self.unexpected.len(), "unexpected key"), self.unexpected.join(", ")));
        }
        if !shapes.is_empty() {
            parts.push(format!("{} of another shape ({})", count(shapes.len(), "key"), shapes.join("; ")));
        }
        write!(f, "{}", parts.join(";"))
    }
}

/// Whether `key` is a batchnorm counter that PyTorch itself lets a state leave out: its batchnorm fills in
/// `num_batches_tracked` when an older state_dict lacks it, so a missing one is no mismatch here either.
fn may_be_missing(key: &str) -> bool {
    key.rsplit('.').next() == Some("num_batches_tracked")
}

/// Loads named tensors into a module's parameters and buffers, PyTorch's
/// `model.load_state_dict(state, strict=...)`. Names and shapes are PyTorch's (`0.w`, `conv1.weight`
/// `[f, c, kh, kw]`), whatever order tiny keeps the values in memory; each value goes to the device its
/// tensor lives on.
///
/// Every key is checked before anything is written, so a load that fails leaves the module's weights as
/// they were. With `strict`, a missing or unexpected key is an error; without, they are reported in the
/// returned [`LoadReport`] and the missing ones keep their current values. A shape mismatch is an error
/// either way.
///
/// # Errors
/// [`NnError::StateDict`], naming every missing, unexpected and mis-shaped key at once.
pub fn load_state_dict(module: &dyn Module, state: Vec<(String, Tensor)>, strict: bool) -> Result<LoadReport> {
    load_checked(module, state, strict, None)
}

/// Reads a safetensors state_dict (as `safetensors.torch.save_file(model.state_dict(), f)` writes it) and
/// loads it as [`load_state_dict`] does; errors name the file.
pub fn load_state_dict_file(module: &dyn Module, path: &Path, strict: bool) -> Result<LoadReport> {
    let (tensors, _) = load_tensors(path)?;
    load_checked(module, tensors, strict, Some(path))
}

/// Saves a module's state_dict (parameters and buffers under their dotted names) as a safetensors file that
/// `safetensors.torch.load_file` reads and `model.load_state_dict` accepts.
pub fn save_state_dict(module: &dyn Module, path: &Path) -> Result<()> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_tensors(path, &module.state_dict(), &meta)
}

/// Loads pretrained weights into every part of `module` but its head, the way fastai starts a learner from an
/// ImageNet body: keys under `head` (a module path such as `fc`, or `5` for simple_cnn) are loaded only when
/// all of them fit; when the file's head has another shape (1,000 ImageNet classes against 10) they are left
/// out and the module keeps its freshly initialised head. Every other key must fit exactly.
///
/// The returned report lists the head's keys as missing when they were left out.
///
/// # Errors
/// As [`load_state_dict_file`], for any key outside the head.
pub fn load_pretrained(module: &dyn Module, path: &Path, head: &str) -> Result<LoadReport> {
    load_pretrained_renamed(module, path, head, &|name| Some(name.to_string()))
}

/// [`load_pretrained`] with the file's names first passed through `rename`, which drops a tensor by answering
/// `None`: a torchvision state_dict for the body of fastai's `vision_learner` model, say (`conv1.weight` ->
/// `0.0.weight`, `fc.*` dropped: [`torchvision_to_fastai`](crate::torchvision_to_fastai)).
///
/// # Errors
/// As [`load_pretrained`].
pub fn load_pretrained_renamed(
    module: &dyn Module,
    path: &Path,
    head: &str,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadReport> {
    let (tensors, _) = load_tensors(path)?;
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().filter_map(|(k, t)| Some((rename(&k)?, t))).collect();
    let prefix = format!("{head}.");
    let in_head = |k: &str| k.starts_with(&prefix);
    let ours: HashMap<String, Vec<usize>> =
        module.state_dict().into_iter().filter(|(k, _)| in_head(k)).map(|(k, t)| (k, t.shape().to_vec())).collect();
    let theirs: HashMap<&str, &[usize]> =
        tensors.iter().filter(|(k, _)| in_head(k)).map(|(k, t)| (k.as_str(), t.shape())).collect();
    let head_fits = ours.len() == theirs.len()
        && ours.iter().all(|(k, shape)| theirs.get(k.as_str()).is_some_and(|s| *s == shape.as_slice()));
    if head_fits {
        return load_checked(module, tensors, true, Some(path));
    }
    let body: Vec<(String, Tensor)> = tensors.into_iter().filter(|(k, _)| !in_head(k)).collect();
    let mut report = load_checked_except(module, body, Some(path), &in_head, false)?;
    report.missing_keys = {
        let mut head_keys: Vec<String> = ours.into_keys().collect();
        head_keys.sort();
        head_keys
    };
    Ok(report)
}

fn load_checked(
    module: &dyn Module,
    state: Vec<(String, Tensor)>,
    strict: bool,
    path: Option<&Path>,
) -> Result<LoadReport> {
    load_checked_except(module, state, path, &|_| !strict, !strict)
}

/// Checks every key, then writes: module keys for which `may_skip` holds may be absent from the state, and
/// state keys the module lacks are allowed when `allow_unexpected`; everything else must match.
fn load_checked_except(
    module: &dyn Module,
    state: Vec<(String, Tensor)>,
    path: Option<&Path>,
    may_skip: &dyn Fn(&str) -> bool,
    allow_unexpected: bool,
) -> Result<LoadReport> {
    let mut by_name: HashMap<String, Tensor> = state.into_iter().collect();
    let mut err = StateDictMismatch { path: path.map(Path::to_path_buf), ..Default::default() };
    let mut report = LoadReport::default();
    let mut pairs = Vec::new();
    for (name, target) in module.state_dict() {
        match by_name.remove(&name) {
            Some(src) if src.shape() != target.shape() => err.mismatched.push(ShapeMismatch {
                key: name,
                state: src.shape().to_vec(),
                module: target.shape().to_vec(),
            }),
            Some(src) => pairs.push((target, src)),
            None if may_be_missing(&name) => {}
            None if may_skip(&name) => report.missing_keys.push(name),
            None => err.missing.push(name),
        }
    }
    let mut extra: Vec<String> = by_name.into_keys().collect();
    extra.sort();
    if allow_unexpected {
        report.unexpected_keys = extra;
    } else {
        err.unexpected = extra;
    }
    if !(err.missing.is_empty() && err.unexpected.is_empty() && err.mismatched.is_empty()) {
        err.missing.sort();
        err.mismatched.sort_by(|a, b| a.key.cmp(&b.key));
        return Err(NnError::StateDict(Box::new(err)));
    }
    for (target, src) in pairs {
        target.assign(&src.to_device(target.device())?)?;
    }
    report.missing_keys.sort();
    Ok(report)
}

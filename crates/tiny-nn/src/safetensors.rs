//! Saving and loading named tensors as safetensors, the format PyTorch and Python's `safetensors` read.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tiny_tensor::Tensor;

use crate::{Module, NnError, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io { path: path.to_path_buf(), source }
}

/// Writes `tensors` (f32, little-endian) and string `metadata` to `path` atomically: into a temporary
/// file beside it, renamed over `path` only when complete.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.shape().to_vec(), t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| NnError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
    let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    let buffer = safetensors::serialize(views, meta)
        .map_err(|e| NnError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("tensors");
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &buffer).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NnError::Io { path: path.to_path_buf(), source: e }
    })
}

/// Named tensors and string metadata, as read from a safetensors file.
pub type TensorFile = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Reads every tensor of a safetensors file (f32 only) with its name, plus the file's metadata.
pub fn load_tensors(path: &Path) -> Result<TensorFile> {
    let buffer = std::fs::read(path).map_err(io(path))?;
    let format = |msg: String| NnError::Format { path: path.to_path_buf(), msg };
    let (_, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| format(e.to_string()))?;
    let st = SafeTensors::deserialize(&buffer).map_err(|e| format(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format(format!("tensor {name} has dtype {:?}; tiny reads f32 only", view.dtype())));
        }
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        out.push((name, Tensor::from_vec(data, view.shape())?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Saves a module's parameters and buffers under their dotted names (`0.w`, `stem.1.running_mean`).
pub fn save_module(module: &dyn Module, path: &Path) -> Result<()> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_tensors(path, &module.state_dict(), &meta)
}

/// Loads parameters and buffers saved by `save_module` into `module`. Every name and shape is checked
/// before anything is written, so a file that does not fit leaves the module untouched; the error names
/// the first mismatch.
pub fn load_module(module: &dyn Module, path: &Path) -> Result<()> {
    let (tensors, _) = load_tensors(path)?;
    load_state(module, tensors)
}

/// Loads named tensors into a module's parameters and buffers, checking all names and shapes first.
pub fn load_state(module: &dyn Module, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut pairs = Vec::new();
    for (name, target) in module.state_dict() {
        let src =
            by_name.remove(&name).ok_or_else(|| NnError::StateMismatch { msg: format!("missing tensor {name}") })?;
        if src.shape() != target.shape() {
            return Err(NnError::StateMismatch {
                msg: format!("{name} has shape {:?} in the file but {:?} in the module", src.shape(), target.shape()),
            });
        }
        pairs.push((target, src));
    }
    if let Some(extra) = by_name.keys().min() {
        return Err(NnError::StateMismatch { msg: format!("unexpected tensor {extra} (not in the module)") });
    }
    for (target, src) in pairs {
        target.assign(&src.to_device(target.device())?)?;
    }
    Ok(())
}

//! Named tensors in and out of safetensors files, as `safetensors.torch.save_file` writes and `load_file` reads them.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tiny_tensor::Tensor;

use crate::{NnError, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io { path: path.to_path_buf(), source }
}

/// Whether a tensor of this name is PyTorch's batch counter, which PyTorch keeps (and saves) as an int64.
fn is_int64_counter(name: &str) -> bool {
    name.rsplit('.').next() == Some("num_batches_tracked")
}

/// Writes `tensors` and string `metadata` to `path` atomically and durably: into a temporary file beside it
/// (`.NAME.tmp-PID`), flushed to disk, renamed over `path`, then the folder flushed, so that neither a failed
/// save nor a crash or power cut leaves anything but the old file or the new one. Temporary files that dead
/// processes left beside `path` (a `kill -9` mid-save) are removed first.
///
/// Tensors are written as little-endian f32, except the batchnorm counters (`*.num_batches_tracked`), which
/// are written as int64 as PyTorch's `state_dict` holds them, so that the file matches what
/// `safetensors.torch.save_file(model.state_dict(), f)` writes for the same model.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let values = t.try_to_vec()?;
            let (dtype, data) = if is_int64_counter(name) {
                (Dtype::I64, values.iter().flat_map(|v| (v.round() as i64).to_le_bytes()).collect())
            } else {
                (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
            };
            Ok((name.clone(), dtype, t.shape().to_vec(), data))
        })
        .collect::<Result<_>>()?;
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), data)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| NnError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
    let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    let buffer = safetensors::serialize(views, meta)
        .map_err(|e| NnError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("tensors");
    remove_stale_temps(path, file_name);
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buffer)?;
        f.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NnError::Io { path: path.to_path_buf(), source: e }
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NnError::Io { path: path.to_path_buf(), source: e }
    })?;
    // The rename is durable once the folder's entry is on disk too (a no-op where folders cannot be opened).
    if let Ok(d) = std::fs::File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes `.NAME.tmp-PID` files beside `path` whose process no longer runs (on Linux, where `/proc` tells;
/// elsewhere nothing is removed, as a live writer cannot be told from a dead one).
fn remove_stale_temps(path: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.tmp-");
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let dead = cfg!(target_os = "linux") && !Path::new("/proc").join(pid.to_string()).exists();
        if dead && pid != std::process::id() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Named tensors and string metadata, as read from a safetensors file.
pub type TensorFile = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Reads every tensor of a safetensors file with its name (sorted by name), plus the file's metadata.
///
/// tiny computes in f32, so other dtypes are converted: F16, BF16 and F64 to the nearest f32, and integer
/// tensors (such as PyTorch's int64 `num_batches_tracked`) to the nearest f32, exact up to 2^24.
///
/// # Errors
/// [`NnError::Io`] or [`NnError::Format`] naming the file; [`NnError::UnsupportedDtype`] naming the file and
/// every tensor of a dtype tiny cannot convert (booleans, 8-, 6- and 4-bit floats).
pub fn load_tensors(path: &Path) -> Result<TensorFile> {
    let buffer = std::fs::read(path).map_err(io(path))?;
    let format = |msg: String| NnError::Format { path: path.to_path_buf(), msg };
    let (_, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| format(e.to_string()))?;
    let st = SafeTensors::deserialize(&buffer).map_err(|e| format(e.to_string()))?;
    let mut out = Vec::new();
    let mut unsupported = Vec::new();
    for (name, view) in st.tensors() {
        match to_f32(view.dtype(), view.data()) {
            Some(data) => out.push((name, Tensor::from_vec(data, view.shape())?)),
            None => unsupported.push((name, format!("{:?}", view.dtype()))),
        }
    }
    if !unsupported.is_empty() {
        unsupported.sort();
        return Err(NnError::UnsupportedDtype { path: path.to_path_buf(), tensors: unsupported });
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Converts little-endian values of `dtype` to f32; `None` for a dtype tiny does not convert.
fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    fn each<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        data.chunks_exact(N).map(|b| f(b.try_into().unwrap_or([0; N]))).collect()
    }
    Some(match dtype {
        Dtype::F32 => each(data, f32::from_le_bytes),
        Dtype::F64 => each(data, |b| f64::from_le_bytes(b) as f32),
        Dtype::F16 => each(data, |b| f16_to_f32(u16::from_le_bytes(b))),
        Dtype::BF16 => each(data, |b| f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)),
        Dtype::I64 => each(data, |b| i64::from_le_bytes(b) as f32),
        Dtype::I32 => each(data, |b| i32::from_le_bytes(b) as f32),
        Dtype::I16 => each(data, |b| f32::from(i16::from_le_bytes(b))),
        Dtype::I8 => each(data, |b: [u8; 1]| f32::from(b[0] as i8)),
        Dtype::U64 => each(data, |b| u64::from_le_bytes(b) as f32),
        Dtype::U32 => each(data, |b| u32::from_le_bytes(b) as f32),
        Dtype::U16 => each(data, |b| f32::from(u16::from_le_bytes(b))),
        Dtype::U8 => each(data, |b: [u8; 1]| f32::from(b[0])),
        _ => return None,
    })
}

/// IEEE half precision to single precision, exactly (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // A subnormal half is frac * 2^-24, which f32 holds exactly.
        (0, _) => {
            let v = frac as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }
}

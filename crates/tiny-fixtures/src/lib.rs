//! Reads the PyTorch fixtures of `parity/make_fixtures.py` and compares values against them, for tiny's tests.
//!
//! A fixture file is a safetensors file of f32 tensors whose `cases` metadata is a JSON list of [`Case`]s. A
//! case's tensors are named `<case>.in<i>` (its inputs, contiguous), `<case>.out<j>` (its outputs),
//! `<case>.cot` (the cotangent: gradients are those of `sum(out0 * cot)`) and `<case>.grad<i>` (the gradient
//! of input `i`, when it has one). Test code runs the same expression with tiny and calls [`assert_close`].

mod gpu;

pub use gpu::{cuda_example, gpu_or_skip};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde::Deserialize;
use serde_json::Value;

/// One recorded expression.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// A unique name, the prefix of the case's tensors.
    pub name: String,
    /// The op (`conv2d`, `matmul`, ...), which the test maps to tiny's.
    pub op: String,
    /// The op's arguments (`stride`, `dims`, ...).
    pub params: Value,
    /// For each input, the views applied to it before the op: `["permute", [2, 0, 1]]`, `["t"]`,
    /// `["narrow", dim, start, len]`, `["expand", [shape]]`, `["channels_last"]`.
    pub views: Vec<Vec<Value>>,
    /// Which inputs have a recorded gradient.
    pub grads: Vec<bool>,
    /// How many outputs were recorded.
    pub outputs: usize,
    /// The relative tolerance of this case (see [`assert_close`]).
    pub rtol: f64,
    /// Why the case exists or why its tolerance is what it is.
    pub note: Option<String>,
}

impl Case {
    /// An integer parameter.
    pub fn usize(&self, key: &str) -> usize {
        self.params[key].as_u64().unwrap_or_else(|| panic!("{}: no integer parameter {key}", self.name)) as usize
    }

    /// A float parameter.
    pub fn f32(&self, key: &str) -> f32 {
        self.params[key].as_f64().unwrap_or_else(|| panic!("{}: no number parameter {key}", self.name)) as f32
    }

    /// A boolean parameter (false when absent).
    pub fn flag(&self, key: &str) -> bool {
        self.params[key].as_bool().unwrap_or(false)
    }

    /// A list of integers (dims, a shape, targets); negative values are allowed.
    pub fn ints(&self, key: &str) -> Vec<i64> {
        self.params[key]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no list parameter {key}", self.name))
            .iter()
            .map(|v| v.as_i64().unwrap_or_else(|| panic!("{}: {key} holds a non-integer", self.name)))
            .collect()
    }
}

/// A tensor as stored: its shape and its values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// Every tensor and case of one fixture file.
#[derive(Debug)]
pub struct Fixtures {
    /// The file, for messages.
    pub path: PathBuf,
    tensors: HashMap<String, Stored>,
    /// The cases, in the order the script recorded them.
    pub cases: Vec<Case>,
    /// The torch version that wrote the file.
    pub torch: String,
}

impl Fixtures {
    /// Reads a fixture file; panics with the file's name when it is absent or malformed (test support).
    pub fn load(path: impl AsRef<Path>) -> Fixtures {
        let path = path.as_ref().to_path_buf();
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run parity/make_fixtures.py)", path.display()));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let meta = meta.metadata().clone().unwrap_or_default();
        let cases = serde_json::from_str(meta.get("cases").map_or("[]", String::as_str))
            .unwrap_or_else(|e| panic!("{}: cases: {e}", path.display()));
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                assert_eq!(view.dtype(), Dtype::F32, "{}: {name} is not f32", path.display());
                let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                (name, Stored { shape: view.shape().to_vec(), data })
            })
            .collect();
        let torch = meta.get("torch").cloned().unwrap_or_default();
        Fixtures { path, tensors, cases, torch }
    }

    /// The tensor `name`; panics naming it when absent.
    pub fn get(&self, name: &str) -> &Stored {
        self.try_get(name).unwrap_or_else(|| panic!("{}: no tensor {name}", self.path.display()))
    }

    /// The tensor `name`, if stored.
    pub fn try_get(&self, name: &str) -> Option<&Stored> {
        self.tensors.get(name)
    }

    /// The names of all stored tensors that start with `prefix`, sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().filter(|k| k.starts_with(prefix)).map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The case `name`; panics naming it when absent.
    pub fn case(&self, name: &str) -> &Case {
        self.cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{}: no case {name}", self.path.display()))
    }
}

/// The path of a fixture file of the calling crate: `tests/fixtures/<file>` under its manifest folder, or under
/// `$TINY_CRATES_DIR/<crate folder>/` when that variable is set (see [`fixtures_dir`]).
#[macro_export]
macro_rules! fixture_path {
    ($file:expr) => {
        $crate::fixtures_dir(env!("CARGO_MANIFEST_DIR")).join($file)
    };
}

/// The fixture folder of the crate whose manifest folder was `manifest_dir` when it was built:
/// `<manifest_dir>/tests/fixtures`, unless `TINY_CRATES_DIR` names where the workspace's `crates/` folder is
/// now (a test binary run away from the tree that built it, as in `cargo xtask gpu-bundle`), in which case
/// `$TINY_CRATES_DIR/<manifest_dir's last component>/tests/fixtures`.
pub fn fixtures_dir(manifest_dir: &str) -> PathBuf {
    fixtures_dir_in(Path::new(manifest_dir), std::env::var_os("TINY_CRATES_DIR").as_deref().map(Path::new))
}

/// [`fixtures_dir`] with the override given explicitly.
fn fixtures_dir_in(manifest_dir: &Path, crates_dir: Option<&Path>) -> PathBuf {
    match (crates_dir, manifest_dir.file_name()) {
        (Some(crates), Some(name)) => crates.join(name).join("tests/fixtures"),
        _ => manifest_dir.join("tests/fixtures"),
    }
}

/// How far `got` is from `want` in units of the tolerance: element `i` passes when
/// `|got[i] - want[i]| <= rtol * (|want[i]| + mean |want|)`, a relative bound that, through the mean
/// magnitude, does not demand relative precision of values that summation has cancelled to near zero.
/// Returns the worst ratio (at most 1 passes) and its index; infinities must match exactly, NaN never passes.
pub fn worst(got: &[f32], want: &[f32], rtol: f64) -> (f64, usize) {
    let finite: Vec<f64> = want.iter().filter(|v| v.is_finite()).map(|v| f64::from(v.abs())).collect();
    let scale = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ratio = if w.is_infinite() || g.is_infinite() {
            if g == w { 0.0 } else { f64::INFINITY }
        } else {
            let bound = rtol * (f64::from(w.abs()) + scale);
            let err = (f64::from(g) - f64::from(w)).abs();
            if err.is_nan() {
                f64::INFINITY
            } else if bound == 0.0 {
                if err == 0.0 { 0.0 } else { f64::INFINITY }
            } else {
                err / bound
            }
        };
        if ratio > worst.0 {
            worst = (ratio, i);
        }
    }
    worst
}

/// Panics unless `got` matches `want` (same shape, every element within [`worst`]'s bound), naming `what`, the
/// worst element and both values.
pub fn assert_close(what: &str, got_shape: &[usize], got: &[f32], want: &Stored, rtol: f64) {
    assert_eq!(got_shape, want.shape.as_slice(), "{what}: shape");
    assert_eq!(got.len(), want.data.len(), "{what}: length");
    let (ratio, i) = worst(got, &want.data, rtol);
    assert!(
        ratio <= 1.0,
        "{what}: element {i} is {} where PyTorch has {} ({ratio:.2}x the tolerance rtol {rtol:e})",
        got[i],
        want.data[i]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_dir_moves_the_fixture_folder_of_a_crate() {
        let built = Path::new("/build/ws/crates/tiny-tensor");
        assert_eq!(fixtures_dir_in(built, None), Path::new("/build/ws/crates/tiny-tensor/tests/fixtures"));
        let moved = fixtures_dir_in(built, Some(Path::new("/gpu/repo/crates")));
        assert_eq!(moved, Path::new("/gpu/repo/crates/tiny-tensor/tests/fixtures"));
    }

    #[test]
    fn the_bound_is_relative_with_the_mean_magnitude_as_a_floor() {
        let want = [1.0f32, -1.0, 0.0, 2.0];
        assert!(worst(&[1.0, -1.0, 0.0, 2.0], &want, 1e-5).0 == 0.0);
        // Mean magnitude 1: an error of 1e-5 at the zero is exactly the bound.
        assert!((worst(&[1.0, -1.0, 1e-5, 2.0], &want, 1e-5).0 - 1.0).abs() < 1e-3);
        assert!(worst(&[1.0, -1.0, 1e-4, 2.0], &want, 1e-5).0 > 9.0);
        assert_eq!(worst(&[f32::NAN, -1.0, 0.0, 2.0], &want, 1e-5).0, f64::INFINITY);
        assert_eq!(worst(&[f32::INFINITY], &[f32::INFINITY], 1e-5).0, 0.0);
        assert_eq!(worst(&[1e30], &[f32::INFINITY], 1e-5).0, f64::INFINITY);
    }
}

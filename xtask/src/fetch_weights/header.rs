//! A safetensors file's header, read without its data, and checked against a table of expected names and shapes.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::Dtype;
use safetensors::tensor::Metadata;

/// The largest header safetensors itself reads, in bytes.
const MAX_HEADER: u64 = 100_000_000;

/// How many names each kind of mismatch lists before it only counts the rest.
const SHOWN: usize = 5;

/// The dtypes a weight or running statistic may be stored in; tiny-nn converts each of them to f32 on loading.
pub const WEIGHT_DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::BF16];

/// One tensor a weights file must hold: its state_dict name and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The dotted name, as PyTorch's `state_dict()` writes it.
    pub name: &'static str,
    /// The shape, in PyTorch's order (`[out, in, kh, kw]` for a convolution).
    pub shape: &'static [usize],
}

/// Builds a [`TensorSpec`]; it keeps the tables short.
pub const fn spec(name: &'static str, shape: &'static [usize]) -> TensorSpec {
    TensorSpec { name, shape }
}

/// A parsed safetensors header: the length of its JSON text and what that text says about each tensor.
#[derive(Debug)]
pub struct Header {
    /// The length of the JSON text in bytes, as the file's first eight bytes give it.
    pub json_len: u64,
    /// The tensors' names, dtypes, shapes and byte ranges, already checked for consistent offsets.
    pub metadata: Metadata,
}

impl Header {
    /// Reads the eight-byte length and the JSON text that follows it from `reader`, and nothing more.
    pub fn read(reader: &mut impl Read) -> Result<Header> {
        let mut len = [0u8; 8];
        reader.read_exact(&mut len).context("too short to be a safetensors file")?;
        let json_len = u64::from_le_bytes(len);
        if json_len > MAX_HEADER {
            bail!("not a safetensors file: its header would be {json_len} bytes long");
        }
        let mut json = Vec::new();
        reader.take(json_len).read_to_end(&mut json).context("could not read the safetensors header")?;
        if json.len() as u64 != json_len {
            bail!("the safetensors header is cut short: {} of {json_len} bytes", json.len());
        }
        let metadata: Metadata = serde_json::from_slice(&json).context("unreadable safetensors header")?;
        Ok(Header { json_len, metadata })
    }

    /// The size in bytes of a whole file with this header: the length field, the JSON text and the data.
    pub fn file_len(&self) -> u64 {
        8 + self.json_len + self.metadata.data_len() as u64
    }
}

/// Reads the header of the safetensors file at `path` and checks that the file is exactly as long as it says.
pub fn inspect(path: &Path) -> Result<Header> {
    let mut file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let header = Header::read(&mut file).with_context(|| format!("could not read {}", path.display()))?;
    let found = file.metadata().with_context(|| format!("could not read {}", path.display()))?.len();
    if found != header.file_len() {
        bail!("{} is {found} bytes long, but its header describes {} bytes", path.display(), header.file_len());
    }
    Ok(header)
}

/// Everything in which a header differs from its table; each list follows the table's order, or name order for
/// the unexpected tensors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Names in the table that the file lacks.
    pub missing: Vec<String>,
    /// Names in the file that the table does not have.
    pub unexpected: Vec<String>,
    /// Tensors with another shape: the name, the expected shape and the one found.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Tensors stored in a dtype outside [`WEIGHT_DTYPES`]: the name and the dtype found.
    pub wrong_dtype: Vec<(String, Dtype)>,
}

impl Mismatch {
    /// Tells whether the header matched the table in every respect.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.wrong_shape.is_empty()
            && self.wrong_dtype.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<String> = self
            .wrong_shape
            .iter()
            .map(|(name, want, got)| format!("{name}: expected {want:?}, found {got:?}"))
            .collect();
        let dtypes: Vec<String> = self.wrong_dtype.iter().map(|(name, dtype)| format!("{name}: {dtype:?}")).collect();
        let parts = [
            ("missing", &self.missing),
            ("unexpected", &self.unexpected),
            ("with the wrong shape", &shapes),
            ("in a dtype other than F32, F16 or BF16", &dtypes),
        ];
        let mut first = true;
        for (what, items) in parts.into_iter().filter(|(_, items)| !items.is_empty()) {
            let noun = if items.len() == 1 { "tensor" } else { "tensors" };
            let mut shown = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if items.len() > SHOWN {
                shown += &format!(" and {} more", items.len() - SHOWN);
            }
            write!(f, "{}{} {noun} {what} ({shown})", if first { "" } else { "; " }, items.len())?;
            first = false;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// Compares a header with a table of expected tensors. A batchnorm's `num_batches_tracked` counter may be present
/// or absent, in any dtype, when the table has that batchnorm's `running_mean`; every other tensor must be in the
/// table, with its shape and one of the [`WEIGHT_DTYPES`].
pub fn check(header: &Header, table: &[TensorSpec]) -> Result<(), Mismatch> {
    let found = header.metadata.tensors();
    let mut mismatch = Mismatch::default();
    for spec in table {
        match found.get(spec.name) {
            None => mismatch.missing.push(spec.name.to_owned()),
            Some(info) if info.shape != spec.shape => {
                mismatch.wrong_shape.push((spec.name.to_owned(), spec.shape.to_vec(), info.shape.clone()))
            }
            Some(info) if !WEIGHT_DTYPES.contains(&info.dtype) => {
                mismatch.wrong_dtype.push((spec.name.to_owned(), info.dtype))
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<_> = found.iter().filter(|(name, _)| !table.iter().any(|s| s.name == *name)).collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    for (name, info) in extra {
        let counts_batches = name.strip_suffix(".num_batches_tracked").is_some_and(|layer| {
            let mean = format!("{layer}.running_mean");
            table.iter().any(|s| s.name == mean)
        });
        if !counts_batches {
            mismatch.unexpected.push(name.clone());
        } else if !matches!(info.shape.as_slice(), [] | [1]) {
            mismatch.wrong_shape.push((name.clone(), Vec::new(), info.shape.clone()));
        }
    }
    if mismatch.is_empty() { Ok(()) } else { Err(mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_lists_the_first_few_names_and_counts_the_rest() {
        let missing = (0..7).map(|i| format!("layer{i}.weight")).collect();
        let wrong_shape = vec![("fc.weight".to_owned(), vec![1000, 512], vec![10, 512])];
        let mismatch = Mismatch { missing, wrong_shape, ..Mismatch::default() };
        assert_eq!(
            mismatch.to_string(),
            "7 tensors missing (layer0.weight, layer1.weight, layer2.weight, layer3.weight, layer4.weight and 2 more); \
             1 tensor with the wrong shape (fc.weight: expected [1000, 512], found [10, 512])"
        );
    }

    #[test]
    fn a_header_longer_than_safetensors_allows_is_refused_before_it_is_read() {
        let bytes = (MAX_HEADER + 1).to_le_bytes();
        let err = Header::read(&mut bytes.as_slice()).unwrap_err();
        assert!(err.to_string().contains("not a safetensors file"), "{err}");
    }
}

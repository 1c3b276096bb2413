//! The bundle's payload: its test binaries and examples, packed by `cargo xtask gpu-bundle` into one gzip'd tar.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

/// The payload's file name in the bundle.
pub const PAYLOAD: &str = "payload.tar.gz";

/// Unpacks the bundle's payload into its folder, where the runner then finds `tests/`, `bench_step` and `train`
/// as if they had been carried unpacked; returns how many files it held, or `None` when there is no payload.
/// Stripped binaries compress to a third or so: packed, the bundle leaves room beside it in what the device tool
/// carries.
pub fn unpack(dir: &Path) -> anyhow::Result<Option<usize>> {
    let path = dir.join(PAYLOAD);
    if !path.is_file() {
        return Ok(None);
    }
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    archive.set_preserve_permissions(true);
    let mut files = 0;
    for entry in archive.entries().with_context(|| format!("reading {}", path.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", path.display()))?;
        // unpack_in refuses paths that would leave the folder.
        let inside = entry.unpack_in(dir).with_context(|| format!("unpacking {} into {}", PAYLOAD, dir.display()))?;
        if inside && entry.header().entry_type().is_file() {
            files += 1;
        }
    }
    Ok(Some(files))
}

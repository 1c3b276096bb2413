//! The bundle's payload: its test binaries and examples, packed by `cargo xtask gpu-bundle` into one gzip'd tar.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The payload's file name in the bundle.
pub const PAYLOAD: &str = "payload.tar.gz";

/// Unpacks the bundle's payload into its folder, where the runner then finds `tests/`, `bench_step` and `train`
/// as if they had been carried unpacked (the carried folder is where programs may run; a `/tmp` may forbid it).
/// Returns the files it wrote, for [`remove`] to take away after the run, or `None` when there is no payload.
/// Stripped binaries compress to a third or so: packed, the bundle leaves room beside it in what the device tool
/// carries.
pub fn unpack(dir: &Path) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let path = dir.join(PAYLOAD);
    if !path.is_file() {
        return Ok(None);
    }
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    archive.set_preserve_permissions(true);
    let mut files = Vec::new();
    for entry in archive.entries().with_context(|| format!("reading {}", path.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let name = entry.path()?.into_owned();
        // unpack_in refuses paths that would leave the folder.
        let inside = entry.unpack_in(dir).with_context(|| format!("unpacking {} into {}", PAYLOAD, dir.display()))?;
        if inside && entry.header().entry_type().is_file() {
            files.push(dir.join(name));
        }
    }
    Ok(Some(files))
}

/// Removes what [`unpack`] wrote, and the folders it leaves empty, so that the bundle is again what was carried
/// (and a bundle run here still fits what the device tool carries).
pub fn remove(files: &[PathBuf]) {
    for file in files {
        let _ = std::fs::remove_file(file);
        if let Some(parent) = file.parent() {
            // Fails, as it should, while the folder holds anything else.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

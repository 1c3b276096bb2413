//! The GPU machine's entry: `run.sh` beside this file, embedded here and written into the bundle.
//!
//! Kept apart from the build, and free of other dependencies, so that `xtask/tests/gpu_run.rs` can write the very
//! same script beside a stand-in runner and run it without building anything.

use std::path::{Path, PathBuf};

/// The script, as the bundle holds it: it starts the runner, `gpu-run`, beside it.
const RUN_SH: &str = include_str!("run.sh");

/// Writes `run.sh` into `dir`, executable, and returns its path.
pub fn write_run_sh(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("run.sh");
    std::fs::write(&path, RUN_SH)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

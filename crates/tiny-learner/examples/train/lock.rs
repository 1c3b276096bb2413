//! The `--save` lock: one run at a time writes a checkpoint path, so two runs never overwrite each other's epochs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A lock file beside the `--save` checkpoints, holding the owner's process id; removed when dropped.
pub struct SaveLock(PathBuf);

impl SaveLock {
    /// Takes the lock of the checkpoint path `save` (a pattern with `{epoch}` or a file): fails, naming the other
    /// process, while a live one holds it; takes over (saying so) a lock whose process is gone.
    pub fn take(save: &Path) -> anyhow::Result<SaveLock> {
        let folder = save.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = save.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = folder.join(format!(".{name}.lock"));
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
                    return Ok(SaveLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default().trim().parse::<u32>().ok();
                    match owner {
                        Some(pid) if alive(pid) => bail!(
                            "--save {}: another run (process {pid}) is writing these checkpoints (lock {}); give \
                             this run another --save path",
                            save.display(),
                            path.display()
                        ),
                        _ => {
                            eprintln!("taking over {}: the run that held it is gone", path.display());
                            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating the --save lock {}", path.display())),
            }
        }
        bail!("--save {}: could not take the lock {}", save.display(), path.display())
    }
}

impl Drop for SaveLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether process `pid` is running (Linux's `/proc`; elsewhere every owner counts as running).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

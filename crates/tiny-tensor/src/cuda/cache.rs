//! The on-disk CUBIN cache: the kernels are compiled once per source, GPU architecture and NVRTC version, not in every process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How a GPU's kernels were loaded when it was opened.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelOrigin {
    /// A CUBIN that an earlier process compiled, read from this file.
    Cache(PathBuf),
    /// A CUBIN that NVRTC compiled in this process, in this many seconds (and wrote to the cache, when one is
    /// set up).
    Compiled(f64),
    /// PTX, which the driver compiled when it loaded it: no CUBIN could be built or loaded for this GPU.
    Ptx,
}

/// The folder of cached kernels: `$TINY_KERNEL_CACHE`, else `$XDG_CACHE_HOME/tiny/kernels`, else
/// `$HOME/.cache/tiny/kernels`; `TINY_KERNEL_CACHE=off` turns the cache off.
pub(crate) fn dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    match var("TINY_KERNEL_CACHE") {
        Some(d) if d.as_os_str() == "off" => None,
        Some(d) => Some(d),
        None => var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache"))).map(|c| c.join("tiny/kernels")),
    }
}

/// The cache file of the kernels `source` built for `sm_{major}{minor}` by NVRTC `nvrtc` (major, minor): the
/// name carries all three, so a change of any of them misses the cache instead of loading stale code.
pub(crate) fn path(dir: &Path, source: &str, (major, minor): (i32, i32), nvrtc: (i32, i32)) -> PathBuf {
    dir.join(format!("tiny-{:016x}-sm{major}{minor}-nvrtc{}.{}.cubin", fnv1a(source), nvrtc.0, nvrtc.1))
}

/// A cached CUBIN, when the file is there and readable.
pub(crate) fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|bytes| !bytes.is_empty())
}

/// Writes a CUBIN under a temporary name, then renames it into place, so that another process never reads half a
/// file. A failure only costs the next process a compile, so it is ignored.
pub(crate) fn write(path: &Path, cubin: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&tmp, cubin));
    if written.and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The 64-bit FNV-1a hash: stable across Rust versions and platforms, unlike `std`'s hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// How each opened GPU's kernels were loaded, by ordinal.
static ORIGINS: [OnceLock<KernelOrigin>; super::MAX_GPUS] = [const { OnceLock::new() }; super::MAX_GPUS];

/// Records how GPU `ordinal`'s kernels were loaded.
pub(crate) fn record(ordinal: usize, origin: KernelOrigin) {
    if let Some(slot) = ORIGINS.get(ordinal) {
        let _ = slot.set(origin);
    }
}

/// How GPU `ordinal`'s kernels were loaded (from the cache, compiled, or as PTX), once it has been opened.
pub fn kernel_origin(ordinal: usize) -> Option<KernelOrigin> {
    ORIGINS.get(ordinal)?.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_source_architecture_and_nvrtc() {
        let d = Path::new("/c");
        let base = path(d, "src", (9, 0), (13, 0));
        assert_ne!(base, path(d, "src2", (9, 0), (13, 0)));
        assert_ne!(base, path(d, "src", (8, 6), (13, 0)));
        assert_ne!(base, path(d, "src", (9, 0), (13, 2)));
        assert_eq!(base, path(d, "src", (9, 0), (13, 0)));
        // FNV-1a's published test value, so the name stays the same from one build to the next.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_written_cubin_reads_back_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("tiny-kernel-cache-test-{}", std::process::id()));
        let p = path(&dir, "x", (9, 0), (13, 0));
        write(&p, b"cubin");
        assert_eq!(read(&p).as_deref(), Some(&b"cubin"[..]));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

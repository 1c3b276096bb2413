//! The decode-once cache: when to keep resized images in memory (`CacheMode`) and how much (`CacheBudget`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// When an image dataset keeps each resized image in memory after its first decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Decode every image on every `get`.
    Off,
    /// Cache when the item transform is deterministic (the chapter's squash or crop resize), where a cached image
    /// is exactly what a fresh decode would give; decode every time under augmentation. The default.
    #[default]
    Auto,
    /// Cache under augmentation too. The random resized crop and flip then read the cached `size x size` image
    /// instead of the full decoded picture, so an augmented item differs from a fresh decode's: a crop of an
    /// already resized image is blurrier and never sees more pixels than `size x size`.
    On,
}

impl CacheMode {
    /// Whether a dataset whose item transform is random (`random`) caches in this mode.
    pub fn caches(self, random: bool) -> bool {
        match self {
            CacheMode::Off => false,
            CacheMode::Auto => !random,
            CacheMode::On => true,
        }
    }
}

impl std::str::FromStr for CacheMode {
    type Err = String;

    /// Parses `off`, `auto` or `on`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(CacheMode::Off),
            "auto" => Ok(CacheMode::Auto),
            "on" => Ok(CacheMode::On),
            _ => Err(format!("unknown cache mode {s:?}; expected off, auto or on")),
        }
    }
}

/// The bytes that the caches sharing it may still take: a dataset stores an image only while the budget lasts, and
/// the images beyond it are decoded on every `get`, as without a cache. Clones share one budget, so the training
/// and validation sets of a [`crate::DataLoaders`] draw on the same amount.
#[derive(Debug, Clone)]
pub struct CacheBudget {
    left: Arc<AtomicUsize>,
    total: usize,
}

impl CacheBudget {
    /// A budget of `bytes`.
    pub fn bytes(bytes: usize) -> Self {
        CacheBudget { left: Arc::new(AtomicUsize::new(bytes)), total: bytes }
    }

    /// A budget of `mb` mebibytes.
    pub fn mebibytes(mb: usize) -> Self {
        Self::bytes(mb.saturating_mul(1 << 20))
    }

    /// The default: a quarter of the machine's memory (`MemTotal` in `/proc/meminfo`), or 1 GiB where that cannot
    /// be read.
    pub fn quarter_of_ram() -> Self {
        Self::bytes(total_ram().map_or(1 << 30, |ram| ram / 4))
    }

    /// The size of the budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The bytes not yet taken.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget when that many are left; returns whether it did.
    pub(crate) fn take(&self, bytes: usize) -> bool {
        self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(bytes)).is_ok()
    }

    /// Gives back `bytes` that were taken but not used (another worker filled the same slot first).
    pub(crate) fn give_back(&self, bytes: usize) {
        self.left.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Default for CacheBudget {
    fn default() -> Self {
        Self::quarter_of_ram()
    }
}

/// The machine's memory in bytes, from `/proc/meminfo` (Linux).
fn total_ram() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_shared_by_its_clones_and_never_overdrawn() {
        let a = CacheBudget::bytes(10);
        let b = a.clone();
        assert!(a.take(6));
        assert!(!b.take(5), "only 4 bytes are left");
        assert!(b.take(4));
        assert_eq!(a.left(), 0);
        a.give_back(3);
        assert_eq!(b.left(), 3);
        assert_eq!(a.total(), 10);
    }

    #[test]
    fn auto_caches_only_deterministic_transforms() {
        assert!(CacheMode::Auto.caches(false) && !CacheMode::Auto.caches(true));
        assert!(CacheMode::On.caches(true) && !CacheMode::Off.caches(false));
        assert_eq!("auto".parse::<CacheMode>(), Ok(CacheMode::Auto));
        assert!("yes".parse::<CacheMode>().is_err());
    }

    #[test]
    fn the_default_budget_is_a_quarter_of_the_memory() {
        if let Some(ram) = total_ram() {
            assert_eq!(CacheBudget::default().total(), ram / 4);
        }
    }
}

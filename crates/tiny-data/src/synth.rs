//! A synthetic Imagenette: the imagenette2-160 folder layout filled with seeded, learnable JPEGs.
//!
//! Each class has a visual signature (a pattern kind, a hue, an orientation and a spatial
//! period) drawn on a random object over a noisy background with clutter and, sometimes, a
//! faint object of another class. Colour is only a partial cue (hues are jittered and some
//! objects get a random colour), so a small CNN has to learn the patterns: it gets well above
//! chance in a few epochs without being near 100% after one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::{DataError, Result, RgbImage, Rng};

mod paint;
pub mod shapes;

pub use paint::render;

/// The ten ImageNet ids of Imagenette's classes, in sorted (label) order.
pub const IMAGENETTE_WNIDS: [&str; 10] = [
    "n01440764",
    "n02102040",
    "n02979186",
    "n03000684",
    "n03028079",
    "n03394916",
    "n03417042",
    "n03425413",
    "n03445777",
    "n03888605",
];

/// Human names of [`IMAGENETTE_WNIDS`], in the same order.
pub const IMAGENETTE_NAMES: [&str; 10] = [
    "tench",
    "English springer",
    "cassette player",
    "chain saw",
    "church",
    "French horn",
    "garbage truck",
    "gas pump",
    "golf ball",
    "parachute",
];

/// Images per class in imagenette2-160's `train` split (9,469 in all).
pub const TRAIN_COUNTS: [usize; 10] = [963, 955, 993, 858, 941, 956, 961, 931, 951, 960];

/// Images per class in imagenette2-160's `val` split (3,925 in all).
pub const VALID_COUNTS: [usize; 10] = [387, 395, 357, 386, 409, 394, 389, 419, 399, 390];

/// JPEG quality of the written files.
const QUALITY: u8 = 88;

/// One file of the plan: where it goes, its class, its size and its own seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthItem {
    /// Path relative to the data set root, such as `train/n01440764/n01440764_00003.JPEG`.
    pub rel_path: PathBuf,
    /// Class index into [`IMAGENETTE_WNIDS`].
    pub class: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Saved as a one-channel (L8) JPEG.
    pub greyscale: bool,
    /// Seed of this image's pixels.
    pub seed: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The data set root.
    pub root: PathBuf,
    /// Number of training images.
    pub train: usize,
    /// Number of validation images.
    pub valid: usize,
    /// Number of greyscale images among them.
    pub greyscale: usize,
    /// Total bytes of JPEG written.
    pub bytes: u64,
}

/// Scales Imagenette's per-class count, keeping at least one image per class.
fn scaled(count: usize, scale: f32) -> usize {
    ((count as f64 * scale as f64).round() as usize).max(1)
}

/// Lists every file of a synthetic set: `scale` 1.0 has Imagenette's counts, 0.01 about 137.
///
/// About 1% of the files of each split are greyscale; the shortest side is always 160 px and
/// the long side varies from 160 to 240 px (mostly 213, as in imagenette2-160).
pub fn plan(scale: f32, seed: u64) -> Vec<SynthItem> {
    let mut items = Vec::new();
    for (split_id, (split, counts)) in [("train", TRAIN_COUNTS), ("val", VALID_COUNTS)].into_iter().enumerate() {
        let mut k = 0usize;
        for (class, &count) in counts.iter().enumerate() {
            let wnid = IMAGENETTE_WNIDS[class];
            for i in 0..scaled(count, scale) {
                let item_seed = crate::mix(&[seed, split_id as u64, k as u64]);
                let mut rng = Rng::new(item_seed);
                let long = if rng.chance(0.55) { 213 } else { 160 + rng.below(81) as u32 };
                let (width, height) = if rng.chance(0.8) { (long, 160) } else { (160, long) };
                let name = if split == "train" {
                    format!("{wnid}_{:05}.JPEG", i + 1)
                } else {
                    format!("ILSVRC2012_val_{:08}.JPEG", k + 1)
                };
                items.push(SynthItem {
                    rel_path: [split, wnid, &name].iter().collect(),
                    class,
                    width,
                    height,
                    greyscale: k % 100 == 7,
                    seed: item_seed,
                });
                k += 1;
            }
        }
    }
    items
}

/// Renders and encodes one planned file as JPEG bytes.
///
/// Colour files use 4:2:0 chroma subsampling, as PIL writes by default and as imagenette2-160's
/// files are, so decoding them costs what decoding Imagenette costs.
pub fn encode_item(item: &SynthItem) -> Result<Vec<u8>> {
    let img = render(item.class, item.width, item.height, item.seed);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut encoder = Encoder::new(&mut out, QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    // Both sides are at most 240 px (see `plan`), far below the format's 65,535.
    let (w, h) = (item.width as u16, item.height as u16);
    let result = if item.greyscale {
        encoder.encode(&to_luma(&img), w, h, ColorType::Luma)
    } else {
        encoder.encode(&img.data, w, h, ColorType::Rgb)
    };
    result.map_err(|source| DataError::Encode { path: item.rel_path.clone(), source })?;
    Ok(out)
}

/// Converts RGB to luma with the ITU-R 601 weights PIL uses.
fn to_luma(img: &RgbImage) -> Vec<u8> {
    img.data
        .chunks_exact(3)
        .map(|p| ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114 + 500) / 1000) as u8)
        .collect()
}

/// Writes a synthetic Imagenette to `out` with one thread per core; see [`generate_with`].
pub fn generate(out: &Path, scale: f32, seed: u64) -> Result<SynthSummary> {
    generate_with(out, scale, seed, crate::default_num_workers())
}

/// Writes a synthetic Imagenette to `out` using `threads` threads.
///
/// The set is written into a temporary sibling folder and renamed into place when complete,
/// so `out` never holds half a data set; an existing `out` is replaced. The bytes depend only
/// on `scale` and `seed`, not on `threads`.
///
/// # Errors
/// [`DataError::InvalidOption`] for a scale that is not positive and finite, [`DataError::Io`]
/// on file-system errors, [`DataError::Encode`] if the JPEG encoder fails.
pub fn generate_with(out: &Path, scale: f32, seed: u64, threads: usize) -> Result<SynthSummary> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(DataError::InvalidOption {
            option: "scale",
            value: scale.to_string(),
            expected: "a positive number, 1.0 for Imagenette's size",
        });
    }
    let items = plan(scale, seed);
    let bytes = replace_dir(out, |tmp| write_all(tmp, &items, threads))?;
    let train = items.iter().filter(|i| i.rel_path.starts_with("train")).count();
    Ok(SynthSummary {
        root: out.to_path_buf(),
        train,
        valid: items.len() - train,
        greyscale: items.iter().filter(|i| i.greyscale).count(),
        bytes,
    })
}

/// Fills a temporary sibling folder of `out` with `fill` and renames it into place when `fill` succeeds (replacing
/// an existing `out`), so that `out` never holds half a data set; on failure the temporary folder is removed.
pub(crate) fn replace_dir<T>(out: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let name = out.file_name().map_or_else(|| "synth".into(), |n| n.to_string_lossy().into_owned());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    let value = match fill(&tmp) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| DataError::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
    } else {
        std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    }
    Ok(value)
}

/// Writes the folders, the CSV and every planned image under `root`; returns the bytes written.
fn write_all(root: &Path, items: &[SynthItem], threads: usize) -> Result<u64> {
    for split in ["train", "val"] {
        for wnid in IMAGENETTE_WNIDS {
            let dir = root.join(split).join(wnid);
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        }
    }
    let csv_path = root.join("noisy_imagenette.csv");
    std::fs::write(&csv_path, labels_csv(items)).map_err(|e| DataError::io(&csv_path, e))?;

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<DataError>> = Mutex::new(None);
    let total = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let path = root.join(&item.rel_path);
                    let result = encode_item(item).and_then(|bytes| {
                        std::fs::write(&path, &bytes).map_err(|e| DataError::io(&path, e))?;
                        Ok(bytes.len())
                    });
                    match result {
                        Ok(n) => {
                            total.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(total.into_inner() as u64),
    }
}

/// Builds a `noisy_imagenette.csv` like the real one's, with every label column clean.
fn labels_csv(items: &[SynthItem]) -> String {
    let mut csv =
        String::from("path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid\n");
    for item in items {
        let wnid = IMAGENETTE_WNIDS[item.class];
        let valid = if item.rel_path.starts_with("val") { "True" } else { "False" };
        let path = item.rel_path.to_string_lossy().replace('\\', "/");
        let _ = writeln!(csv, "{path},{wnid},{wnid},{wnid},{wnid},{wnid},{valid}");
    }
    csv
}

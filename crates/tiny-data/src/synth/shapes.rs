//! A synthetic multi-label set: images of two shapes each, labelled in a CSV with both names (fastbook chapter 6's task).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jpeg_encoder::{ColorType, Encoder};

use super::replace_dir;
use crate::{DataError, Result, Rng};

/// The shapes, in sorted (vocabulary) order.
pub const SHAPES: [&str; 5] = ["circle", "cross", "ring", "square", "triangle"];

/// What [`generate`] writes: how many images, how large, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapesConfig {
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub valid: usize,
    /// The side of each square image, in pixels (32 to 1024).
    pub size: u32,
    /// The seed of every image and label.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig { train: 6000, valid: 600, size: 64, seed: 0 }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapesSummary {
    /// The data set root.
    pub root: PathBuf,
    /// The labels file, `labels.csv` under the root: `fname,labels,is_valid`, the labels two shape names
    /// separated by a space (fastai's `label_delim=' '`).
    pub csv: PathBuf,
    /// Training and validation images.
    pub counts: [usize; 2],
}

/// Writes `cfg.train + cfg.valid` JPEGs under `out/images/` and their labels in `out/labels.csv`: each image holds
/// two different shapes of [`SHAPES`], each in its own colour, at random places, sizes and angles over a noisy
/// background. The set is written into a temporary sibling folder and renamed into place when complete; an
/// existing `out` is replaced. The bytes depend only on `cfg`.
///
/// ```no_run
/// use tiny_data::synth::shapes::{ShapesConfig, generate};
/// let set = generate(std::path::Path::new("data/synth-shapes"), &ShapesConfig::default()).unwrap();
/// assert_eq!(set.counts, [6000, 600]);
/// ```
///
/// # Errors
/// [`DataError::InvalidOption`] for a size below 32 pixels or no image in a split, [`DataError::Io`] on file-system
/// errors, [`DataError::Encode`] if the JPEG encoder fails.
pub fn generate(out: &Path, cfg: &ShapesConfig) -> Result<ShapesSummary> {
    if cfg.size < 32 || cfg.size > 1024 {
        let value = cfg.size.to_string();
        return Err(DataError::InvalidOption { option: "size", value, expected: "32 to 1024 pixels" });
    }
    if cfg.train == 0 || cfg.valid == 0 {
        let value = format!("{} train, {} valid", cfg.train, cfg.valid);
        return Err(DataError::InvalidOption { option: "images", value, expected: "at least one image in each split" });
    }
    replace_dir(out, |tmp| {
        let images = tmp.join("images");
        std::fs::create_dir_all(&images).map_err(|e| DataError::io(&images, e))?;
        let mut csv = String::from("fname,labels,is_valid\n");
        for i in 0..cfg.train + cfg.valid {
            let mut rng = Rng::from_parts(&[cfg.seed, 0x5348_4150_4553, i as u64]);
            let (pixels, pair) = render(cfg.size, &mut rng);
            let name = format!("{i:05}.jpg");
            let mut bytes = Vec::with_capacity(8 * 1024);
            let side = cfg.size as u16;
            Encoder::new(&mut bytes, 90)
                .encode(&pixels, side, side, ColorType::Rgb)
                .map_err(|source| DataError::Encode { path: PathBuf::from(&name), source })?;
            let path = images.join(&name);
            std::fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))?;
            let valid = if i >= cfg.train { "True" } else { "False" };
            let _ = writeln!(csv, "{name},{} {},{valid}", SHAPES[pair[0]], SHAPES[pair[1]]);
        }
        let path = tmp.join("labels.csv");
        std::fs::write(&path, csv).map_err(|e| DataError::io(&path, e))
    })?;
    Ok(ShapesSummary { root: out.to_path_buf(), csv: out.join("labels.csv"), counts: [cfg.train, cfg.valid] })
}

/// One `size x size` RGB image and its two shapes (indices into [`SHAPES`], in increasing order).
pub fn render(size: u32, rng: &mut Rng) -> (Vec<u8>, [usize; 2]) {
    let n = size as usize;
    let s = size as f32;
    // A background of one muted colour with noise.
    let base = [rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)];
    let mut img: Vec<f32> = (0..n * n * 3).map(|i| base[i % 3] + 0.06 * rng.normal()).collect();
    let first = rng.below(SHAPES.len());
    let second = (first + 1 + rng.below(SHAPES.len() - 1)) % SHAPES.len();
    // Two places far enough apart that the shapes do not overlap.
    let r = [rng.uniform(0.13, 0.2) * s, rng.uniform(0.13, 0.2) * s];
    let place = |rng: &mut Rng, r: f32| [rng.uniform(r, s - r), rng.uniform(r, s - r)];
    let a = place(rng, r[0]);
    let mut b = place(rng, r[1]);
    for _ in 0..100 {
        if ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() > r[0] + r[1] + 2.0 {
            break;
        }
        b = place(rng, r[1]);
    }
    for (shape, centre, radius) in [(first, a, r[0]), (second, b, r[1])] {
        let colour = bright(rng);
        let angle = rng.uniform(0.0, std::f32::consts::TAU);
        let (sin, cos) = angle.sin_cos();
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = (x as f32 + 0.5 - centre[0], y as f32 + 0.5 - centre[1]);
                // In the shape's own frame: rotated back by its angle, in units of its radius.
                let (u, v) = ((dx * cos + dy * sin) / radius, (-dx * sin + dy * cos) / radius);
                if inside(shape, u, v) {
                    let at = (y * n + x) * 3;
                    img[at..at + 3].copy_from_slice(&colour);
                }
            }
        }
    }
    let pixels = img.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let mut pair = [first, second];
    pair.sort_unstable();
    (pixels, pair)
}

/// A saturated colour with one channel high, so that shapes stand out from the muted background.
fn bright(rng: &mut Rng) -> [f32; 3] {
    let mut c = [rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3)];
    c[rng.below(3)] = rng.uniform(0.85, 1.0);
    if rng.chance(0.5) {
        c[rng.below(3)] = rng.uniform(0.7, 1.0);
    }
    c
}

/// Whether the point `(u, v)` (in units of the shape's radius, in its own frame) lies inside shape `shape`.
fn inside(shape: usize, u: f32, v: f32) -> bool {
    let d = (u * u + v * v).sqrt();
    match SHAPES[shape] {
        "circle" => d <= 1.0,
        "ring" => (0.55..=1.0).contains(&d),
        "square" => u.abs() <= 0.75 && v.abs() <= 0.75,
        "cross" => (u.abs() <= 0.28 && v.abs() <= 1.0) || (v.abs() <= 0.28 && u.abs() <= 1.0),
        // An equilateral triangle of circumradius 1, pointing up: below the two upper edges, above the base.
        _ => v <= 0.5 && (3f32.sqrt() * u.abs() - v) <= 1.0,
    }
}

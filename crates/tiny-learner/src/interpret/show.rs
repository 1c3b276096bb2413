//! The interpretation's image grids, fastai's `plot_top_losses` and `show_batch`, as PNGs.

use std::path::Path;

use tiny_data::{ItemTransform, Normalize, decode_rgb};

use super::{THUMB, TopLoss};
use crate::plot::{ImageGrid, Tile};
use tiny_data::Batch;

use crate::{LearnerError, Result};

/// The size the images of `show_batch` are scaled up to (by whole factors), so that a 16-pixel item is visible.
const BATCH_THUMB: usize = 128;

/// Draws `top` as a grid: each file decoded and fitted with `tfm`'s method at no less than [`THUMB`] pixels, under
/// fastai's `prediction/actual / loss / probability` label (on two lines when one is too narrow).
pub(super) fn plot_top_losses(top: &[TopLoss], tfm: ItemTransform, path: &Path) -> Result<()> {
    let tfm = ItemTransform { size: tfm.size.max(THUMB), ..tfm.deterministic() };
    let size = tfm.size as usize;
    let mut grid = ImageGrid::new("Prediction/Actual/Loss/Probability", ImageGrid::square_cols(top.len()));
    for t in top {
        let img = decode_rgb(&t.file)?;
        let pixels = tfm.apply(&img, None, &t.file)?;
        let lines = top_loss_label(t, size as u32);
        grid = grid.tile(Tile::new(pixels, size, size, lines));
    }
    grid.save_png(path)
}

/// fastai's label `prediction/actual / loss / probability` on one line when it fits in `width` pixels, else with the
/// numbers on a line of their own, else with the two class names on a line each too.
fn top_loss_label(t: &TopLoss, width: u32) -> Vec<String> {
    let classes = format!("{}/{}", t.predicted, t.actual);
    let numbers = format!("{:.2} / {:.2}", t.loss, t.probability);
    let one = format!("{classes} / {numbers}");
    if crate::plot::label_width(&one) <= width {
        vec![one]
    } else if crate::plot::label_width(&classes) <= width {
        vec![classes, numbers]
    } else {
        vec![format!("{}/", t.predicted), t.actual.clone(), numbers]
    }
}

/// fastai's `dls.show_batch()`: a PNG grid of the first `max_items` images of `batch` as a loader yields them
/// (NHWC, values in `[0, 1]`), each under its class name from `vocab`, small images scaled up by whole factors.
///
/// A tiny-data batch (`dls.train.iter_epoch(0)`) becomes one with `Batch { x: b.x, y: b.y }`.
///
/// # Errors
/// [`LearnerError::InvalidArgument`] when `batch.x` is not `[n, height, width, 3]` with one label per image; the
/// PNG's own errors.
pub fn show_batch(batch: &Batch, vocab: &[String], path: &Path, max_items: usize) -> Result<()> {
    let shape = batch.x.shape().to_vec();
    let bad = |msg: String| LearnerError::InvalidArgument { what: "show_batch", msg };
    let [n, h, w, 3] = shape[..] else {
        return Err(bad(format!("images of shape {shape:?}; expected NHWC [n, height, width, 3]")));
    };
    if batch.y.len() != n {
        return Err(bad(format!("{} labels for {n} images", batch.y.len())));
    }
    let values = batch.x.try_to_vec()?;
    grid_of(&values, (n, h, w), &batch.y, vocab, max_items).save_png(path)
}

/// [`show_batch`] for a batch as the model receives it after `SetupLearner`: normalised with `stats` and, when
/// shaped `[n, 3, height, width]`, channels first; the images are put back to `[0, 1]` RGB first.
///
/// # Errors
/// As [`show_batch`], for a shape that is neither NCHW nor NHWC with 3 channels.
pub fn show_batch_denormalized(
    batch: &Batch,
    vocab: &[String],
    stats: &Normalize,
    path: &Path,
    max_items: usize,
) -> Result<()> {
    let shape = batch.x.shape().to_vec();
    let x = match shape[..] {
        [_, 3, _, w] if w != 3 => batch.x.permute(&[0, 2, 3, 1])?,
        [_, _, _, 3] => batch.x.clone(),
        _ => {
            return Err(LearnerError::InvalidArgument {
                what: "show_batch_denormalized",
                msg: format!("images of shape {shape:?}; expected [n, 3, height, width] or [n, height, width, 3]"),
            });
        }
    };
    let mut values = x.try_to_vec()?;
    for px in values.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = px[c] * stats.std[c] + stats.mean[c];
        }
    }
    let x = tiny_tensor::Tensor::from_vec(values, x.shape())?;
    show_batch(&Batch { x, y: batch.y.clone() }, vocab, path, max_items)
}

/// The grid of the first `max_items` of `n` images of `h x w` RGB values in `[0, 1]`, labelled with their classes
/// (a multi-label item's joined by `;`, as fastai shows a `MultiCategory`).
fn grid_of(
    values: &[f32],
    (n, h, w): (usize, usize, usize),
    y: &tiny_data::Targets,
    vocab: &[String],
    max_items: usize,
) -> ImageGrid {
    let shown = n.min(max_items);
    let k = BATCH_THUMB.div_ceil(h.max(w).max(1)).max(1);
    let mut grid = ImageGrid::new("", ImageGrid::square_cols(shown));
    for i in 0..shown.min(y.len()) {
        let item = &values[i * h * w * 3..(i + 1) * h * w * 3];
        let pixels = item.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        let name = crate::inference::label_names(&y.label_set(i), vocab);
        grid = grid.tile(Tile::new(pixels, w, h, vec![name]).upscaled(k));
    }
    grid
}

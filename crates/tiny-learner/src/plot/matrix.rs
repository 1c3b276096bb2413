//! `MatrixPlot`: a square matrix of counts as a heat map with class names on both axes, as fastai's confusion matrix.

use std::path::Path;

use super::canvas::Align::{End, Middle, Start};
use super::{Canvas, INK, Rgb, WHITE, font};
use crate::{LearnerError, Result};

/// matplotlib's `Blues` colour map, the one fastai's `plot_confusion_matrix` uses, at nine even stops.
const BLUES: [Rgb; 9] = [
    [247, 251, 255],
    [222, 235, 247],
    [198, 219, 239],
    [158, 202, 225],
    [107, 174, 214],
    [66, 146, 198],
    [33, 113, 181],
    [8, 81, 156],
    [8, 48, 107],
];

/// The longest a class name may be drawn, in pixels; longer names are cut with an ellipsis.
const MAX_NAME_W: u32 = 190;
const NAME_PX: f32 = 14.0;
const DESC_PX: f32 = 16.0;
const TITLE_PX: f32 = 20.0;
/// The width of the colour scale's bar.
const BAR_W: i64 = 18;
const FRAME: Rgb = [160, 160, 160];

/// The colour of `t` in `[0, 1]` on the `Blues` map.
fn blues(t: f64) -> Rgb {
    let s = t.clamp(0.0, 1.0) * (BLUES.len() - 1) as f64;
    let (i, f) = (s.floor() as usize, s.fract());
    let (a, b) = (BLUES[i], BLUES[(i + 1).min(BLUES.len() - 1)]);
    std::array::from_fn(|c| (a[c] as f64 + (b[c] as f64 - a[c] as f64) * f).round() as u8)
}

/// A titled square matrix of counts, rows and columns named alike, with a colour scale beside it.
///
/// ```
/// use tiny_learner::plot::MatrixPlot;
/// let names = vec!["cat".to_string(), "dog".to_string()];
/// let plot = MatrixPlot::new("Confusion matrix", "Predicted", "Actual", names, vec![vec![5, 1], vec![0, 4]]).unwrap();
/// let img = plot.render().unwrap();
/// assert!(img.width > 200 && img.height > 200);
/// ```
#[derive(Debug, Clone)]
pub struct MatrixPlot {
    title: String,
    x_label: String,
    y_label: String,
    names: Vec<String>,
    counts: Vec<Vec<u64>>,
}

impl MatrixPlot {
    /// A plot of `counts` (row `i`, column `j`) with `names` along both axes, `x_label` under the columns and
    /// `y_label` beside the rows.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] unless `counts` is `names.len()` rows of `names.len()` counts.
    pub fn new(title: &str, x_label: &str, y_label: &str, names: Vec<String>, counts: Vec<Vec<u64>>) -> Result<Self> {
        let n = names.len();
        if counts.len() != n || counts.iter().any(|r| r.len() != n) {
            let shape: Vec<usize> = counts.iter().map(Vec::len).collect();
            return Err(LearnerError::InvalidArgument {
                what: "MatrixPlot::new",
                msg: format!("{n} names need {n} rows of {n} counts, got rows of {shape:?}"),
            });
        }
        Ok(MatrixPlot { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), names, counts })
    }

    /// Draws the plot.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the embedded font cannot be read.
    pub fn render(&self) -> Result<Canvas> {
        font::check().map_err(|msg| LearnerError::InvalidArgument { what: "MatrixPlot::render", msg })?;
        let n = self.names.len() as i64;
        let names: Vec<String> = self.names.iter().map(|s| font::ellipsize(s, NAME_PX, MAX_NAME_W)).collect();
        let names_w = names.iter().map(|s| font::text_width(s, NAME_PX)).max().unwrap_or(0) as i64;
        let max = self.counts.iter().flatten().copied().max().unwrap_or(0).max(1);
        let ticks_w = font::text_width(&max.to_string(), NAME_PX) as i64;
        let cell = (560 / n.max(1)).clamp(26, 72);
        let (ox, oy) = (14 + DESC_PX as i64 + 12 + names_w + 8, 14 + TITLE_PX as i64 + 22);
        let side = n * cell;
        let bar_x = ox + side + 20;
        let title_w = font::text_width(&self.title, TITLE_PX) as i64 + 28;
        let width = (bar_x + BAR_W + 8 + ticks_w + 16).max(title_w);
        let height = oy + side + 8 + names_w + 12 + DESC_PX as i64 + 16;
        let mut c = Canvas::new(width as usize, height as usize, WHITE);

        c.text((width / 2, 14), &self.title, TITLE_PX, INK, (Middle, Start));
        // Cells, with their counts in white on the darker half of the scale, as fastai's matplotlib plot does.
        let count_px = (cell as f32 * 0.36).clamp(10.0, 16.0);
        for (i, row) in self.counts.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let t = v as f64 / max as f64;
                let (x, y) = (ox + j as i64 * cell, oy + i as i64 * cell);
                c.fill_rect(x, y, x + cell - 1, y + cell - 1, blues(t));
                let colour = if t > 0.5 { WHITE } else { INK };
                c.text((x + cell / 2, y + cell / 2), &v.to_string(), count_px, colour, (Middle, Middle));
            }
        }
        c.stroke_rect(ox - 1, oy - 1, ox + side, oy + side, FRAME);

        // Class names: right-aligned beside the rows, read upwards under the columns as matplotlib's rotation=90.
        for (k, name) in names.iter().enumerate() {
            let mid = k as i64 * cell + cell / 2;
            c.text((ox - 8, oy + mid), name, NAME_PX, INK, (End, Middle));
            c.text_up((ox + mid, oy + side + 8), name, NAME_PX, INK, (End, Middle));
        }
        c.text((ox + side / 2, height - 14), &self.x_label, DESC_PX, INK, (Middle, End));
        c.text_up((14, oy + side / 2), &self.y_label, DESC_PX, INK, (Middle, Start));

        // The colour scale: a bar from 0 at the bottom to the largest count at the top, with round ticks.
        for y in 0..side {
            let colour = blues(1.0 - y as f64 / (side - 1).max(1) as f64);
            c.fill_rect(bar_x, oy + y, bar_x + BAR_W - 1, oy + y, colour);
        }
        c.stroke_rect(bar_x - 1, oy - 1, bar_x + BAR_W, oy + side, FRAME);
        for v in count_ticks(max) {
            let y = oy + side - 1 - (v as f64 / max as f64 * (side - 1) as f64).round() as i64;
            c.fill_rect(bar_x + BAR_W, y, bar_x + BAR_W + 4, y, INK);
            c.text((bar_x + BAR_W + 8, y), &v.to_string(), NAME_PX, INK, (Start, Middle));
        }
        Ok(c)
    }

    /// Renders and writes the plot as a PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.render()?.save_png(path)
    }
}

/// About five round counts from 0 to `max` (1, 2 or 5 times a power of ten apart).
fn count_ticks(max: u64) -> Vec<u64> {
    let raw = (max as f64 / 5.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag) as u64;
    let step = step.max(1);
    (0..=max / step).map(|k| k * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_colours() {
        assert_eq!(count_ticks(1), vec![0, 1]);
        assert_eq!(count_ticks(10), vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(count_ticks(37), vec![0, 10, 20, 30]);
        assert_eq!(blues(0.0), BLUES[0]);
        assert_eq!(blues(1.0), BLUES[8]);
    }
}

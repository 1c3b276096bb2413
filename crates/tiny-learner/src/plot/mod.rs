//! PNG line plots (loss curves, the LR finder) drawn pixel by pixel with an embedded bitmap font.

mod canvas;
pub mod font;

use std::path::Path;

pub use canvas::{Canvas, Rgb};

use crate::Result;

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const PALETTE: [Rgb; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

/// One named curve of `(x, y)` points; points that are not finite are left out.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, drawn joined in order.
    pub points: Vec<(f64, f64)>,
    /// Whether each point also gets a small square.
    pub markers: bool,
}

impl Series {
    /// A curve through `points`.
    pub fn line(name: &str, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.to_string(), points, markers: false }
    }

    /// Marks each point with a small square too.
    pub fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// A line plot with a title, axis labels, a legend, optional log-scale x and a marked x value.
///
/// ```
/// use tiny_learner::plot::{LinePlot, Series};
/// let img = LinePlot::new("loss", "batch", "loss")
///     .series(Series::line("train", vec![(0.0, 2.3), (1.0, 1.7), (2.0, 1.2)]))
///     .render();
/// assert_eq!((img.width, img.height), (720, 480));
/// ```
#[derive(Debug, Clone)]
pub struct LinePlot {
    title: String,
    x_label: String,
    y_label: String,
    log_x: bool,
    mark_x: Option<(f64, String)>,
    series: Vec<Series>,
    width: usize,
    height: usize,
}

impl LinePlot {
    /// An empty 720x480 plot.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            mark_x: None,
            series: Vec::new(),
            width: 720,
            height: 480,
        }
    }

    /// Adds a curve.
    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    /// Uses a base-10 logarithmic x axis (non-positive x values are left out).
    pub fn log_x(mut self) -> Self {
        self.log_x = true;
        self
    }

    /// Draws a dashed vertical line at `x` with a label, when `x` is inside the plotted range.
    pub fn mark_x(mut self, x: f64, label: &str) -> Self {
        self.mark_x = Some((x, label.to_string()));
        self
    }

    fn tx(&self, x: f64) -> Option<f64> {
        if !self.log_x {
            return x.is_finite().then_some(x);
        }
        (x > 0.0 && x.is_finite()).then(|| x.log10())
    }

    /// Draws the plot.
    pub fn render(&self) -> Canvas {
        let (w, h) = (self.width as i64, self.height as i64);
        let mut c = Canvas::new(self.width, self.height, WHITE);
        let (left, right, top, bottom) = (80i64, w - 20, 40i64, h - 60);
        let clip = (left, top, right, bottom);
        let pts: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| s.points.iter().filter_map(|&(x, y)| Some((self.tx(x)?, y))).filter(|p| p.1.is_finite()).collect())
            .collect();
        let all = pts.iter().flatten();
        let (xr, yr) = all.fold(((f64::MAX, f64::MIN), (f64::MAX, f64::MIN)), |((a, b), (c, d)), &(x, y)| {
            ((a.min(x), b.max(x)), (c.min(y), d.max(y)))
        });
        let xr = pad_range(xr, 0.0);
        let yr = pad_range(yr, 0.05);
        let px = |x: f64| left + ((x - xr.0) / (xr.1 - xr.0) * (right - left) as f64).round() as i64;
        let py = |y: f64| bottom - ((y - yr.0) / (yr.1 - yr.0) * (bottom - top) as f64).round() as i64;

        // Grid, ticks and tick labels.
        for y in ticks(yr) {
            let v = py(y);
            c.line((left, v), (right, v), GRID, clip, 0);
            let label = fmt_tick(y);
            c.text(left - 8 - font::text_width(&label, 1) as i64, v - 3, &label, 1, INK);
        }
        let xt = if self.log_x { log_ticks(xr) } else { ticks(xr) };
        for x in xt {
            let v = px(x);
            c.line((v, top), (v, bottom), GRID, clip, 0);
            let label = if self.log_x { format!("1e{}", x.round() as i64) } else { fmt_tick(x) };
            c.text(v - font::text_width(&label, 1) as i64 / 2, bottom + 8, &label, 1, INK);
        }
        c.line((left, top), (left, bottom), INK, (0, 0, w, h), 0);
        c.line((left, bottom), (right, bottom), INK, (0, 0, w, h), 0);

        // Labels and title.
        let tw = font::text_width(&self.title, 2) as i64;
        c.text((w - tw) / 2, 10, &self.title, 2, INK);
        let xw = font::text_width(&self.x_label, 1) as i64;
        c.text((left + right - xw) / 2, bottom + 30, &self.x_label, 1, INK);
        c.text(8, top - 16, &self.y_label, 1, INK);

        // Curves, thickened by a second pass one pixel lower, and a legend aligned on its longest name.
        let names_w = self.series.iter().map(|s| font::text_width(&s.name, 1)).max().unwrap_or(0) as i64;
        for (i, (s, p)) in self.series.iter().zip(&pts).enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            for pair in p.windows(2) {
                let (a, b) = ((px(pair[0].0), py(pair[0].1)), (px(pair[1].0), py(pair[1].1)));
                c.line(a, b, col, clip, 0);
                c.line((a.0, a.1 + 1), (b.0, b.1 + 1), col, clip, 0);
            }
            if s.markers || p.len() == 1 {
                for &(x, y) in p {
                    c.fill_rect(px(x) - 2, py(y) - 2, px(x) + 2, py(y) + 2, col);
                }
            }
            let ly = top + 8 + 14 * i as i64;
            let lx = right - 10 - names_w - 24;
            c.fill_rect(lx, ly + 2, lx + 16, ly + 4, col);
            c.text(lx + 22, ly, &s.name, 1, INK);
        }
        if let Some((x, label)) = &self.mark_x
            && let Some(x) = self.tx(*x)
            && (xr.0..=xr.1).contains(&x)
        {
            let v = px(x);
            c.line((v, top), (v, bottom), PALETTE[3], clip, 4);
            // The label sits low, clear of the legend, on whichever side of the line has room.
            let lw = font::text_width(label, 1) as i64;
            let lx = if v + 6 + lw > right { v - 6 - lw } else { v + 6 };
            c.text(lx, bottom - 14, label, 1, PALETTE[3]);
        }
        c
    }

    /// Renders and writes the plot as a PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.render().save_png(path)
    }
}

/// A range that is never empty, widened by `pad` of its span on each side.
fn pad_range((lo, hi): (f64, f64), pad: f64) -> (f64, f64) {
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

/// About five round tick values (1, 2 or 5 times a power of ten apart) inside `range`.
fn ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last.min(first + 20)).map(|k| k as f64 * step).collect()
}

/// The integer powers of ten (as exponents) inside a log10 range.
fn log_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let (first, last) = (lo.ceil() as i64, hi.floor() as i64);
    (first..=last.min(first + 30)).map(|k| k as f64).collect()
}

/// A short label for a tick value: up to four decimals without trailing zeros, or `1.5e-5` style.
fn fmt_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let t = ticks((0.0, 1.0));
        assert_eq!(t.len(), 6);
        assert!((t[1] - 0.2).abs() < 1e-12 && (t[5] - 1.0).abs() < 1e-12);
        assert_eq!(log_ticks((-6.2, 1.1)), vec![-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0]);
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(fmt_tick(2.0), "2");
        assert_eq!(fmt_tick(0.00001), "1.0e-5");
    }

    #[test]
    fn every_label_character_has_a_glyph() {
        for c in "0123456789abcdefghijklmnopqrstuvwxyz.,-+=:()/_ ".chars() {
            assert!(font::has_glyph(c), "{c}");
        }
    }
}

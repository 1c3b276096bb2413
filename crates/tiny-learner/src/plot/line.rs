//! `LinePlot`: loss curves and the LR finder's curve, with ticks, a legend and a marked value.

use std::path::Path;

use super::canvas::Align::{End, Middle, Start};
use super::font;
use super::{Canvas, GRID, INK, MARKS, PALETTE, WHITE};
use crate::{LearnerError, Result};

const TITLE_PX: f32 = 20.0;
const LABEL_PX: f32 = 15.0;
const TICK_PX: f32 = 13.0;

/// One named curve of `(x, y)` points; points that are not finite are left out.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, drawn joined in order.
    pub points: Vec<(f64, f64)>,
    /// Whether each point also gets a dot.
    pub markers: bool,
}

impl Series {
    /// A curve through `points`.
    pub fn line(name: &str, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.to_string(), points, markers: false }
    }

    /// Marks each point with a dot too.
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
///     .render()
///     .unwrap();
/// assert_eq!((img.width, img.height), (720, 480));
/// ```
#[derive(Debug, Clone)]
pub struct LinePlot {
    title: String,
    x_label: String,
    y_label: String,
    log_x: bool,
    mark_x: Vec<(f64, String)>,
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
            mark_x: Vec::new(),
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

    /// Draws a dashed vertical line at `x` with a label, when `x` is inside the plotted range; each call adds one,
    /// in its own colour, its label a line below the last.
    pub fn mark_x(mut self, x: f64, label: &str) -> Self {
        self.mark_x.push((x, label.to_string()));
        self
    }

    /// `x` on the plotted scale: itself, or its base-10 logarithm on a log axis; `None` for a point left out.
    fn tx(&self, x: f64) -> Option<f64> {
        if !self.log_x {
            return x.is_finite().then_some(x);
        }
        (x > 0.0 && x.is_finite()).then(|| x.log10())
    }

    /// Draws the plot.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the embedded font cannot be read.
    pub fn render(&self) -> Result<Canvas> {
        font::check().map_err(|msg| LearnerError::InvalidArgument { what: "LinePlot::render", msg })?;
        let (w, h) = (self.width as i64, self.height as i64);
        let mut c = Canvas::new(self.width, self.height, WHITE);
        let pts: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| s.points.iter().filter_map(|&(x, y)| Some((self.tx(x)?, y))).filter(|p| p.1.is_finite()).collect())
            .collect();
        let (xr, yr) =
            pts.iter().flatten().fold(((f64::MAX, f64::MIN), (f64::MAX, f64::MIN)), |((a, b), (c, d)), &(x, y)| {
                ((a.min(x), b.max(x)), (c.min(y), d.max(y)))
            });
        let (xr, yr) = (pad_range(xr, 0.0), pad_range(yr, 0.05));
        let y_ticks: Vec<(f64, String)> = ticks(yr).into_iter().map(|y| (y, fmt_tick(y))).collect();
        let tick_w = y_ticks.iter().map(|(_, l)| font::text_width(l, TICK_PX)).max().unwrap_or(0) as i64;
        let (left, right, top, bottom) = (14 + 20 + 10 + tick_w + 8, w - 28, 48i64, h - 64);
        let clip = (left, top, right, bottom);
        let px = |x: f64| left + ((x - xr.0) / (xr.1 - xr.0) * (right - left) as f64).round() as i64;
        let py = |y: f64| bottom - ((y - yr.0) / (yr.1 - yr.0) * (bottom - top) as f64).round() as i64;

        // Grid, ticks and tick labels.
        for (y, label) in &y_ticks {
            let v = py(*y);
            c.line((left, v), (right, v), GRID, clip, 0);
            c.line((left - 5, v), (left, v), INK, (0, 0, w, h), 0);
            c.text((left - 8, v), label, TICK_PX, INK, (End, Middle));
        }
        let x_ticks: Vec<(f64, String)> = if self.log_x {
            log_ticks(xr).into_iter().map(|x| (x, pow10_label(x))).collect()
        } else {
            ticks(xr).into_iter().map(|x| (x, fmt_tick(x))).collect()
        };
        for (x, label) in &x_ticks {
            let v = px(*x);
            c.line((v, top), (v, bottom), GRID, clip, 0);
            c.line((v, bottom), (v, bottom + 5), INK, (0, 0, w, h), 0);
            c.text((v, bottom + 8), label, TICK_PX, INK, (Middle, Start));
        }
        c.line((left, top), (left, bottom), INK, (0, 0, w, h), 0);
        c.line((left, bottom), (right, bottom), INK, (0, 0, w, h), 0);

        // Title and axis labels.
        c.text((w / 2, 12), &self.title, TITLE_PX, INK, (Middle, Start));
        c.text(((left + right) / 2, h - 12), &self.x_label, LABEL_PX, INK, (Middle, End));
        c.text_up((14, (top + bottom) / 2), &self.y_label, LABEL_PX, INK, (Middle, Start));

        // Curves, two pixels wide.
        for (i, (s, p)) in self.series.iter().zip(&pts).enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            for pair in p.windows(2) {
                let (a, b) = ((px(pair[0].0), py(pair[0].1)), (px(pair[1].0), py(pair[1].1)));
                c.stroke(a, b, col, clip, 0, 2);
            }
            if s.markers || p.len() == 1 {
                for &(x, y) in p {
                    c.dot(px(x), py(y), 4, col);
                }
            }
        }
        // The marked value's line, then the legend where it hides the fewest points and crosses no marked line,
        // then the marked value's label beside its line, on a white ground, clear of the legend.
        let marks: Vec<(usize, i64, &str)> = (self.mark_x.iter().enumerate())
            .filter_map(|(i, (x, label))| {
                let x = self.tx(*x)?;
                (xr.0..=xr.1).contains(&x).then(|| (i, px(x), label.as_str()))
            })
            .collect();
        let mut obstacles: Vec<(i64, i64)> = pts.iter().flatten().map(|&(x, y)| (px(x), py(y))).collect();
        for &(i, v, _) in &marks {
            c.stroke((v, top), (v, bottom), MARKS[i % MARKS.len()], clip, 6, 2);
            // The line counts as many points, so that a corner it crosses loses to any other.
            obstacles.extend((top..=bottom).flat_map(|y| std::iter::repeat_n((v, y), 50)));
        }
        let legend = self.legend(&mut c, (left, top, right, bottom), &obstacles);
        for &(i, v, label) in &marks {
            let lw = font::text_width(label, TICK_PX) as i64;
            let overlaps = |lx: i64, ly: i64| {
                legend
                    .is_some_and(|(x0, y0, x1, y1)| lx - 4 <= x1 && lx + lw + 4 >= x0 && ly - 11 <= y1 && ly + 11 >= y0)
            };
            let (l, r) = (v - 10 - lw, v + 10);
            let y = top + 17 + 24 * i as i64;
            let (lx, ly) = if l > left && !overlaps(l, y) {
                (l, y)
            } else if r + lw < right && !overlaps(r, y) {
                (r, y)
            } else {
                (if l > left { l } else { r }, legend.map_or(y, |b| b.3 + 20 + 24 * i as i64))
            };
            c.fill_rect(lx - 4, ly - 11, lx + lw + 4, ly + 11, WHITE);
            c.text((lx, ly), label, TICK_PX, MARKS[i % MARKS.len()], (Start, Middle));
        }
        Ok(c)
    }

    /// Draws the legend, a framed white box with a short line and the name of each series, in the corner of the
    /// plot area that covers the fewest `obstacles` (the top right one when they tie), as matplotlib's `loc="best"`;
    /// returns the box, if there is a legend.
    fn legend(
        &self,
        c: &mut Canvas,
        (left, top, right, bottom): (i64, i64, i64, i64),
        obstacles: &[(i64, i64)],
    ) -> Option<(i64, i64, i64, i64)> {
        let named: Vec<(usize, &Series)> = self.series.iter().enumerate().filter(|(_, s)| !s.name.is_empty()).collect();
        if named.is_empty() {
            return None;
        }
        let names_w = named.iter().map(|(_, s)| font::text_width(&s.name, LABEL_PX)).max().unwrap_or(0) as i64;
        let (w, h) = (12 + 24 + 8 + names_w + 12, 10 + 22 * named.len() as i64);
        let corners = [
            (right - 10 - w, top + 10),
            (left + 10, top + 10),
            (right - 10 - w, bottom - 10 - h),
            (left + 10, bottom - 10 - h),
        ];
        let covered = |&(x0, y0): &(i64, i64)| {
            obstacles.iter().filter(|&&(x, y)| x >= x0 - 4 && x <= x0 + w + 4 && y >= y0 - 4 && y <= y0 + h + 4).count()
        };
        let (x0, y0) = corners.iter().copied().min_by_key(covered).unwrap_or(corners[0]);
        let (x1, y1) = (x0 + w, y0 + h);
        c.fill_rect(x0, y0, x1, y1, WHITE);
        c.stroke_rect(x0, y0, x1, y1, [200, 200, 200]);
        for (row, (i, s)) in named.iter().enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            let y = y0 + 16 + 22 * row as i64;
            c.fill_rect(x0 + 12, y - 1, x0 + 36, y + 1, col);
            c.text((x0 + 44, y), &s.name, LABEL_PX, INK, (Start, Middle));
        }
        Some((x0, y0, x1, y1))
    }

    /// Renders and writes the plot as a PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.render()?.save_png(path)
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
pub(crate) fn ticks((lo, hi): (f64, f64)) -> Vec<f64> {
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

/// The label of a tick on a log axis at exponent `v`, in `10⁻³` style.
fn pow10_label(v: f64) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let k = v.round() as i64;
    let digits: String = k.unsigned_abs().to_string().bytes().map(|d| SUP[(d - b'0') as usize]).collect();
    format!("10{}{digits}", if k < 0 { "⁻" } else { "" })
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
        assert_eq!(pow10_label(-7.0), "10⁻⁷");
        assert_eq!(pow10_label(12.0), "10¹²");
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(pad_range((f64::MAX, f64::MIN), 0.0), (0.0, 1.0));
        let (lo, hi) = pad_range((2.0, 2.0), 0.05);
        assert!(lo < 2.0 && hi > 2.0);
    }
}

//! `Canvas`: an RGB pixel buffer with lines, rectangles, dots, pasted images and antialiased text, written out as PNG.

use std::io::BufWriter;
use std::path::Path;

use super::font;
use crate::{LearnerError, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Where text sits against its anchor point, along one direction: its start, its middle or its end there. Across the
/// line of text, `Start` puts the top of the tallest letters at the anchor, `Middle` the middle of the capitals and
/// `End` the bottom of the descenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// The start (left, or top) at the anchor.
    Start,
    /// The middle at the anchor.
    Middle,
    /// The end (right, or bottom) at the anchor.
    End,
}

/// An image of `width x height` RGB pixels, row-major, 8 bits per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * width * height` bytes, row by row.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas { width, height, rgb: background.repeat(width * height) }
    }

    /// The colour at `(x, y)`, if inside.
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| {
            let i = 3 * (y * self.width + x);
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        })
    }

    /// Sets one pixel; coordinates outside the canvas are ignored.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        self.blend(x, y, c, 1.0);
    }

    /// Mixes `c` into one pixel with weight `a` in `[0, 1]`; coordinates outside the canvas are ignored.
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            let a = a.clamp(0.0, 1.0);
            for k in 0..3 {
                let old = self.rgb[i + k] as f32;
                self.rgb[i + k] = (old + (c[k] as f32 - old) * a).round() as u8;
            }
        }
    }

    /// Fills the rectangle with corners `(x0, y0)` and `(x1, y1)` inclusive.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1).max(0)..=y0.max(y1).min(self.height as i64 - 1) {
            for x in x0.min(x1).max(0)..=x0.max(x1).min(self.width as i64 - 1) {
                self.set(x, y, c);
            }
        }
    }

    /// The outline of the rectangle with corners `(x0, y0)` and `(x1, y1)` inclusive.
    pub fn stroke_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        self.fill_rect(x0, y0, x1, y0, c);
        self.fill_rect(x0, y1, x1, y1, c);
        self.fill_rect(x0, y0, x0, y1, c);
        self.fill_rect(x1, y0, x1, y1, c);
    }

    /// A filled disc of radius `r` around `(x, y)`.
    pub fn dot(&mut self, x: i64, y: i64, r: i64, c: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r + r {
                    self.set(x + dx, y + dy, c);
                }
            }
        }
    }

    /// A Bresenham line; `clip` limits it to a rectangle `(x0, y0, x1, y1)`; `dash` skips every other
    /// run of that many pixels.
    pub fn line(&mut self, from: (i64, i64), to: (i64, i64), c: Rgb, clip: (i64, i64, i64, i64), dash: usize) {
        self.stroke(from, to, c, clip, dash, 1);
    }

    /// [`Canvas::line`] drawn with a square brush `width` pixels wide, for curves that stay visible at any slope.
    pub fn stroke(
        &mut self,
        from: (i64, i64),
        to: (i64, i64),
        c: Rgb,
        clip: (i64, i64, i64, i64),
        dash: usize,
        width: i64,
    ) {
        let ((mut x, mut y), (x1, y1)) = (from, to);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        // A line longer than any canvas means a coordinate blew up; stop rather than loop for ages.
        for n in 0..100_000usize {
            let visible = dash == 0 || (n / dash).is_multiple_of(2);
            if visible {
                for (bx, by) in (0..width.max(1)).flat_map(|i| (0..width.max(1)).map(move |j| (x + i, y + j))) {
                    if bx >= clip.0 && bx <= clip.2 && by >= clip.1 && by <= clip.3 {
                        self.set(bx, by, c);
                    }
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Copies an RGB image of `width x height` pixels (`3 * width * height` bytes, HWC) with its top-left corner
    /// at `(x, y)`; the parts that fall outside the canvas, or past the end of `pixels`, are left out.
    pub fn paste(&mut self, x: usize, y: usize, width: usize, height: usize, pixels: &[u8]) {
        let w = width.min(self.width.saturating_sub(x));
        for row in 0..height.min(self.height.saturating_sub(y)) {
            let (src, dst) = (3 * row * width, 3 * ((y + row) * self.width + x));
            if let (Some(s), Some(d)) = (pixels.get(src..src + 3 * w), self.rgb.get_mut(dst..dst + 3 * w)) {
                d.copy_from_slice(s);
            }
        }
    }

    /// Draws `text` at `px` pixels (the font's full height) in DejaVu Sans, placed against `at` by `(h, v)`.
    pub fn text(&mut self, at: (i64, i64), text: &str, px: f32, c: Rgb, (h, v): (Align, Align)) {
        let m = font::rasterize(text, px);
        let left = at.0 - along(h, m.width as i64);
        let top = at.1 - across(v, &m);
        for y in 0..m.height {
            for x in 0..m.width {
                let a = m.alpha[y * m.width + x];
                if a > 0.0 {
                    self.blend(left + x as i64, top + y as i64, c, a);
                }
            }
        }
    }

    /// [`Canvas::text`] turned a quarter left, to read upwards: `h` places it along its (vertical) line, `Start` at
    /// the bottom; `v` across it, `Start` being the tops of the letters, on the left.
    pub fn text_up(&mut self, at: (i64, i64), text: &str, px: f32, c: Rgb, (h, v): (Align, Align)) {
        let m = font::rasterize(text, px);
        // The turned box is m.height wide and m.width tall; the text's start is at its bottom.
        let bottom = at.1 + along(h, m.width as i64);
        let left = at.0 - across(v, &m);
        for y in 0..m.height {
            for x in 0..m.width {
                let a = m.alpha[y * m.width + x];
                if a > 0.0 {
                    self.blend(left + y as i64, bottom - 1 - x as i64, c, a);
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG, atomically: into a temporary file beside `path`, then
    /// renamed over it.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let png_err = |e: png::EncodingError| LearnerError::Png { path: path.to_path_buf(), msg: e.to_string() };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plot.png");
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(LearnerError::io(&tmp))?;
        let mut enc = png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let written = enc.write_header().and_then(|mut w| {
            w.write_image_data(&self.rgb)?;
            w.finish()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(png_err(e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            LearnerError::Io { path: path.to_path_buf(), source: e }
        })
    }
}

/// How far before the anchor a run of `len` pixels starts when aligned by `a` along it.
fn along(a: Align, len: i64) -> i64 {
    match a {
        Align::Start => 0,
        Align::Middle => len / 2,
        Align::End => len,
    }
}

/// How far below the mask's top row the anchor is when aligned by `a` across the text.
fn across(a: Align, m: &font::Mask) -> i64 {
    match a {
        Align::Start => 0,
        Align::Middle => m.baseline as i64 - m.cap as i64 / 2,
        Align::End => m.height as i64,
    }
}

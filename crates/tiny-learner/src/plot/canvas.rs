//! `Canvas`: an RGB pixel buffer with lines, rectangles and text, written out as PNG.

use std::io::BufWriter;
use std::path::Path;

use super::font;
use crate::{LearnerError, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

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
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fills the rectangle with corners `(x0, y0)` and `(x1, y1)` inclusive.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    /// A Bresenham line; `clip` limits it to a rectangle `(x0, y0, x1, y1)`; `dash` skips every other
    /// run of that many pixels.
    pub fn line(&mut self, from: (i64, i64), to: (i64, i64), c: Rgb, clip: (i64, i64, i64, i64), dash: usize) {
        let ((mut x, mut y), (x1, y1)) = (from, to);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        // A line longer than any canvas means a coordinate blew up; stop rather than loop for ages.
        for n in 0..100_000usize {
            let visible = dash == 0 || (n / dash).is_multiple_of(2);
            if visible && x >= clip.0 && x <= clip.2 && y >= clip.1 && y <= clip.3 {
                self.set(x, y, c);
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

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, c: Rgb) {
        let s = scale as i64;
        for (k, ch) in text.chars().enumerate() {
            let gx = x + k as i64 * (font::WIDTH as i64 + 1) * s;
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for (col, b) in bits.bytes().enumerate() {
                    if b == b'#' {
                        let (px, py) = (gx + col as i64 * s, y + row as i64 * s);
                        self.fill_rect(px, py, px + s - 1, py + s - 1, c);
                    }
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

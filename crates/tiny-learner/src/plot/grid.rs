//! `ImageGrid`: images in rows and columns, each under its lines of text, as fastai's `show_batch` and `plot_top_losses`.

use std::path::Path;

use super::canvas::Align::{Middle, Start};
use super::font;
use super::{Canvas, INK, WHITE};
use crate::{LearnerError, Result};

/// The size of a tile's label text in pixels.
const LABEL_PX: f32 = 14.0;
/// The height of one label line.
const LINE_H: usize = 18;
/// The space between and around tiles.
const PAD: usize = 12;
/// The height of the title band.
const TITLE_H: usize = 40;
const TITLE_PX: f32 = 20.0;

/// The width in pixels of `text` as a tile's label.
pub(crate) fn label_width(text: &str) -> u32 {
    font::text_width(text, LABEL_PX)
}

/// One image of a grid with its label: RGB bytes in HWC order and the lines of text drawn above it.
#[derive(Debug, Clone)]
pub struct Tile {
    /// `3 * width * height` bytes.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The label's lines, each cut with an ellipsis to the tile's width when too long.
    pub lines: Vec<String>,
}

impl Tile {
    /// A tile of `width x height` RGB bytes with one label line per entry of `lines`.
    pub fn new(pixels: Vec<u8>, width: usize, height: usize, lines: Vec<String>) -> Self {
        Tile { pixels, width, height, lines }
    }

    /// The tile scaled up `k` times by repeating pixels, so that a small image stays sharp and shows what the model saw.
    pub fn upscaled(self, k: usize) -> Self {
        if k <= 1 {
            return self;
        }
        let (w, h) = (self.width * k, self.height * k);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let i = 3 * ((y / k) * self.width + x / k);
                pixels.extend_from_slice(self.pixels.get(i..i + 3).unwrap_or(&[0, 0, 0]));
            }
        }
        Tile { pixels, width: w, height: h, ..self }
    }
}

/// A titled grid of [`Tile`]s, filled row by row.
///
/// ```
/// use tiny_learner::plot::{ImageGrid, Tile};
/// let tile = Tile::new(vec![128; 32 * 32 * 3], 32, 32, vec!["golf ball".into()]);
/// let img = ImageGrid::new("batch", 2).tile(tile.clone()).tile(tile).render().unwrap();
/// assert!(img.width > 64 && img.height > 32);
/// ```
#[derive(Debug, Clone)]
pub struct ImageGrid {
    title: String,
    cols: usize,
    tiles: Vec<Tile>,
}

impl ImageGrid {
    /// An empty grid of `cols` columns (at least one) under `title` (none when empty).
    pub fn new(title: &str, cols: usize) -> Self {
        ImageGrid { title: title.to_string(), cols: cols.max(1), tiles: Vec::new() }
    }

    /// Adds a tile.
    pub fn tile(mut self, t: Tile) -> Self {
        self.tiles.push(t);
        self
    }

    /// The number of columns for `n` tiles in a grid about as wide as it is tall, as fastai's `get_grid`.
    pub fn square_cols(n: usize) -> usize {
        (n.max(1) as f64).sqrt().ceil() as usize
    }

    /// Draws the grid.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the embedded font cannot be read.
    pub fn render(&self) -> Result<Canvas> {
        font::check().map_err(|msg| LearnerError::InvalidArgument { what: "ImageGrid::render", msg })?;
        let cols = self.cols.min(self.tiles.len()).max(1);
        let rows = self.tiles.len().div_ceil(cols).max(1);
        let cell_w = self.tiles.iter().map(|t| t.width).max().unwrap_or(64);
        let img_h = self.tiles.iter().map(|t| t.height).max().unwrap_or(64);
        let label_h = LINE_H * self.tiles.iter().map(|t| t.lines.len()).max().unwrap_or(0) + 4;
        let cell_h = label_h + img_h;
        let top = if self.title.is_empty() { PAD } else { TITLE_H };
        let title_w = font::text_width(&self.title, TITLE_PX) as usize + 2 * PAD;
        let width = (PAD + cols * (cell_w + PAD)).max(title_w);
        let height = top + rows * (cell_h + PAD);
        let mut c = Canvas::new(width, height, WHITE);
        let x0 = (width - (PAD + cols * (cell_w + PAD))) / 2;
        if !self.title.is_empty() {
            c.text((width as i64 / 2, 10), &self.title, TITLE_PX, INK, (Middle, Start));
        }
        for (i, t) in self.tiles.iter().enumerate() {
            let (x, y) = (x0 + PAD + (i % cols) * (cell_w + PAD), top + (i / cols) * (cell_h + PAD));
            c.paste(x + (cell_w - t.width) / 2, y + label_h, t.width, t.height, &t.pixels);
            // Labels sit right above their image: a shorter one starts lower.
            let first = label_h - 4 - LINE_H * t.lines.len();
            for (k, line) in t.lines.iter().enumerate() {
                let line = font::ellipsize(line, LABEL_PX, cell_w as u32);
                let at = ((x + cell_w / 2) as i64, (y + first + k * LINE_H) as i64);
                c.text(at, &line, LABEL_PX, INK, (Middle, Start));
            }
        }
        Ok(c)
    }

    /// Renders and writes the grid as a PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.render()?.save_png(path)
    }
}

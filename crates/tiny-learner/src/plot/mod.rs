//! PNG pictures drawn pixel by pixel, their text in DejaVu Sans embedded in the binary: line plots (loss, LR
//! finder), a labelled matrix (the confusion matrix) and labelled image grids (top losses, `show_batch`).

mod canvas;
mod font;
mod grid;
mod line;
mod matrix;

pub use canvas::{Align, Canvas, Rgb};
pub use grid::{ImageGrid, Tile};
pub use line::{LinePlot, Series};
pub use matrix::MatrixPlot;

pub(crate) use grid::label_width;

/// What a drawing step returns inside this module: a message that the public functions wrap in a `LearnerError`.
type DrawResult<T> = std::result::Result<T, String>;

const WHITE: Rgb = [255, 255, 255];
/// Text and axes.
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [228, 228, 228];
/// The series colours, matplotlib's first four.
const PALETTE: [Rgb; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

/// The colours of marked x values after the first (matplotlib's purple, brown, pink and grey).
const MARKS: [Rgb; 4] = [[214, 39, 40], [148, 103, 189], [140, 86, 75], [127, 127, 127]];

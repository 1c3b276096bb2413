//! Collating items into a batch: stacking HWC bytes into one NHWC `f32` tensor in `[0, 1]`.

use tiny_tensor::Tensor;

use crate::{DataError, ImageItem, Result, Targets};

/// A batch as the chapter's `collate` returns it: inputs and their targets (class indices, or multi-hot rows). From a loader the inputs are
/// images `[bs, height, width, 3]` (NHWC) in `[0, 1]`; a learner's callbacks may replace them with whatever the
/// model takes (normalised NCHW, on the GPU).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The inputs, batch dimension first.
    pub x: Tensor,
    /// The targets: one class index per item, or one multi-hot row per item for multi-label data.
    pub y: Targets,
}

impl Batch {
    /// An empty batch, a learner's placeholder before the first one arrives.
    pub fn empty() -> Self {
        Batch { x: Tensor::zeros(&[0]), y: Targets::default() }
    }

    /// Wraps a raw batch's buffer in a tensor without copying it.
    ///
    /// # Errors
    /// [`DataError::Tensor`] when the buffer does not fill the shape.
    pub fn from_raw(raw: RawBatch) -> Result<Self> {
        Ok(Batch { x: Tensor::from_vec(raw.x, &raw.shape)?, y: raw.y })
    }

    /// Returns the number of images.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Tells whether the batch holds no images.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// A collated batch as raw buffers: `x` is NHWC `f32` in `[0, 1]`, `y` the targets.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    /// Pixel values, `shape.iter().product()` of them, row-major NHWC.
    pub x: Vec<f32>,
    /// `[batch, height, width, channels]`.
    pub shape: [usize; 4],
    /// The targets, one class index or one multi-hot row per image.
    pub y: Targets,
}

impl RawBatch {
    /// Returns the number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Tells whether the batch holds no images.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
}

/// Stacks items into one batch, scaling bytes to `[0, 1]`: the chapter's `collate`.
///
/// ```
/// use tiny_data::{collate, ImageItem};
/// let item = |v, label| ImageItem { pixels: vec![v; 2 * 2 * 3], height: 2, width: 2, target: vec![label].into() };
/// let b = collate(&[item(255, 3), item(0, 1)]).unwrap();
/// assert_eq!(b.x.shape(), &[2, 2, 2, 3]);
/// assert_eq!((b.x.to_vec()[0], b.x.to_vec()[12]), (1.0, 0.0));
/// assert_eq!(b.y.as_slice(), [3, 1]);
/// ```
///
/// # Errors
/// As [`collate_raw`].
pub fn collate(items: &[ImageItem]) -> Result<Batch> {
    Batch::from_raw(collate_raw(items)?)
}

/// Like [`collate`], returning plain buffers instead of a tensor.
///
/// # Errors
/// [`DataError::ShapeMismatch`] when the items differ in size, or [`DataError::InvalidOption`]
/// for an item whose byte count does not match its size or whose targets are of another kind than the first's.
pub fn collate_raw(items: &[ImageItem]) -> Result<RawBatch> {
    let (h, w) = items.first().map_or((0, 0), |i| (i.height, i.width));
    let per = h * w * 3;
    // One spare slot on purpose. tiny-tensor pools dropped buffers whose capacity equals their length,
    // and the loader never takes from that pool, so exact-size batch buffers would pile up there (to
    // its 1 GiB cap: 455 MiB after one pass over Imagenette's train split). With the spare slot they
    // return to the system allocator, which gives the same memory to the worker's next batch (peak
    // RSS of that pass: 23 MiB).
    let mut x = Vec::with_capacity(items.len() * per + 1);
    let mut y = items.first().map_or_else(Targets::default, |i| i.target.empty_like());
    for (index, item) in items.iter().enumerate() {
        if (item.height, item.width) != (h, w) {
            return Err(DataError::ShapeMismatch { index, expected: [h, w, 3], got: [item.height, item.width, 3] });
        }
        if item.pixels.len() != per {
            return Err(DataError::InvalidOption {
                option: "item pixels",
                value: format!("{} bytes for {h}x{w}x3", item.pixels.len()),
                expected: "height * width * 3 bytes",
            });
        }
        // The chapter's `float() / 255`, as a division the compiler vectorises.
        x.extend(item.pixels.iter().map(|&p| f32::from(p) / 255.0));
        y.extend(&item.target)?;
    }
    Ok(RawBatch { x, shape: [items.len(), h, w, 3], y })
}

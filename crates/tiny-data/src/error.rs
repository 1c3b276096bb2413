//! The crate's one error type, with a structured variant per way loading data can fail.

use std::path::{Path, PathBuf};

/// A `Result` whose error is [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while finding, decoding, batching or generating images.
///
/// Every variant caused by one bad file names that file, so a message such as
/// "cannot decode image data/train/n01440764/x.JPEG" points straight at the culprit.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A folder that should hold a data set does not exist.
    #[error("data folder {path} does not exist")]
    MissingFolder {
        /// The folder that was looked for.
        path: PathBuf,
    },
    /// An entry of a data folder could not be walked: a dangling link, a link loop, a permission error.
    #[error("cannot read {path} while walking the data folder: {why}")]
    BadEntry {
        /// The entry (file, folder or link) at fault.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A data folder's layout gives no training data as asked: no split folders and no `valid_pct`, say.
    #[error("{root}: {why}")]
    Layout {
        /// The data set root.
        root: PathBuf,
        /// What is wrong, and what would do.
        why: String,
    },
    /// A labels CSV (fastai's `from_csv`) that cannot be used as it is: the file, the line and the fault.
    #[error("{path}, line {line}: {why}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The line at fault, counted from 1 (the header is line 1).
        line: u64,
        /// What is wrong with it.
        why: String,
    },
    /// A pattern for labels from file names (fastai's `from_name_re`) that is not a usable regular expression.
    #[error("label pattern {pattern:?}: {why}")]
    LabelPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// A file whose name gives no label (its name does not match the pattern, say).
    #[error("{path}: no label in its name: {why}")]
    NameWithoutLabel {
        /// The file.
        path: PathBuf,
        /// Why its name gives none.
        why: String,
    },
    /// Reading, writing, creating or renaming a file failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file with an image extension has no bytes at all.
    #[error("image file {path} is empty (zero bytes)")]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// A JPEG file stops before its end-of-image marker.
    #[error("JPEG file {path} is truncated (no end-of-image marker)")]
    TruncatedJpeg {
        /// The truncated file.
        path: PathBuf,
    },
    /// The `image` crate could not decode a file: corrupt data or not an image at all.
    #[error("cannot decode image {path}")]
    Decode {
        /// The file that failed to decode.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image whose header claims more pixels than tiny decodes (a decompression bomb, or a corrupt header).
    #[error("image {path} claims {width}x{height} pixels, more than the {limit} tiny decodes (as PIL refuses it)")]
    TooManyPixels {
        /// The offending file.
        path: PathBuf,
        /// The width its header claims.
        width: u32,
        /// The height its header claims.
        height: u32,
        /// The largest pixel count decoded, [`crate::MAX_IMAGE_PIXELS`].
        limit: u64,
    },
    /// An image decoded to zero width or height, so it cannot be resized.
    #[error("image {path} has an empty size ({width}x{height})")]
    EmptyImage {
        /// The offending file.
        path: PathBuf,
        /// Decoded width in pixels.
        width: u32,
        /// Decoded height in pixels.
        height: u32,
    },
    /// Resizing an image failed; this points at a bug in the crop geometry.
    #[error("cannot resize image {path}")]
    Resize {
        /// The image being resized.
        path: PathBuf,
        /// The resizer's error.
        #[source]
        source: fast_image_resize::ResizeError,
    },
    /// An image's pixel buffer is shorter than its width and height say.
    #[error("pixel buffer of image {path} does not match its size")]
    ResizeBuffer {
        /// The image being resized.
        path: PathBuf,
        /// The resizer's error.
        #[source]
        source: fast_image_resize::ImageBufferError,
    },
    /// Encoding a synthetic image as JPEG failed.
    #[error("cannot encode image {path}")]
    Encode {
        /// The file that was being written.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: jpeg_encoder::EncodingError,
    },
    /// A folder holds no image files at all.
    #[error("no image files under {path}")]
    NoImages {
        /// The folder that was searched.
        path: PathBuf,
    },
    /// A train or validation split has no files.
    #[error("split {split:?} is empty under {root} (expected files in {root}/{split}/<class>/)")]
    EmptySplit {
        /// The split's folder name, such as `train` or `val`.
        split: String,
        /// The data set root.
        root: PathBuf,
    },
    /// A class has images in one split and none in the other.
    #[error("class {class:?} has images in split {present_in:?} but none in {absent_from:?}")]
    ClassMissingFromSplit {
        /// The class (parent folder) name.
        class: String,
        /// The split where it appears.
        present_in: String,
        /// The split where it is absent.
        absent_from: String,
    },
    /// A file's parent folder is not in the vocabulary.
    #[error("label {label:?} of {path} is not in the vocabulary")]
    UnknownLabel {
        /// The parent folder name.
        label: String,
        /// The file whose label is unknown.
        path: PathBuf,
    },
    /// A path has no parent folder name to use as a label.
    #[error("cannot take a label from {path}: it has no parent folder name")]
    NoLabel {
        /// The path without a usable parent.
        path: PathBuf,
    },
    /// A file's parent folder name, its label, is not valid UTF-8.
    #[error("cannot take a label from {path}: its folder name {folder:?} is not valid UTF-8; rename the folder")]
    NonUtf8Label {
        /// The file whose folder name is not UTF-8.
        path: PathBuf,
        /// The folder name, with the bytes that are not UTF-8 replaced by U+FFFD.
        folder: String,
    },
    /// A dataset index past its end.
    #[error("index {index} out of range for a dataset of {len} items")]
    IndexOutOfRange {
        /// The requested index.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// Items handed to `collate` do not share one shape.
    #[error("cannot collate item {index}: shape {got:?} differs from the first item's {expected:?}")]
    ShapeMismatch {
        /// Position of the odd item in the batch.
        index: usize,
        /// Shape `[height, width, channels]` of the first item.
        expected: [usize; 3],
        /// Shape `[height, width, channels]` of the odd item.
        got: [usize; 3],
    },
    /// A configuration value is out of its allowed range.
    #[error("invalid {option}: {value} ({expected})")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// The value given, formatted.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Statistics were asked of a batch or split with no pixels.
    #[error("cannot compute statistics of an empty {what}")]
    EmptyStats {
        /// What was empty: a batch or a split.
        what: &'static str,
    },
    /// A loader worker thread panicked while building a batch; the batch is lost.
    #[error("a loader worker panicked while building batch {batch}")]
    WorkerPanicked {
        /// The batch number that was being built.
        batch: usize,
    },
    /// A tensor operation failed (building a batch tensor or normalising one).
    #[error(transparent)]
    Tensor(#[from] tiny_tensor::TensorError),
    /// A loader worker thread could not be started.
    #[error("cannot spawn loader worker thread")]
    Spawn {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl DataError {
    /// Builds an [`DataError::Io`] for `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }

    /// Returns the file a per-file error is about, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::EmptyFile { path }
            | DataError::TruncatedJpeg { path }
            | DataError::Decode { path, .. }
            | DataError::EmptyImage { path, .. }
            | DataError::TooManyPixels { path, .. }
            | DataError::Resize { path, .. }
            | DataError::ResizeBuffer { path, .. }
            | DataError::Encode { path, .. }
            | DataError::UnknownLabel { path, .. }
            | DataError::NoLabel { path }
            | DataError::NonUtf8Label { path, .. }
            | DataError::Csv { path, .. }
            | DataError::NameWithoutLabel { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Tells whether this error comes from one unreadable or undecodable image file,
    /// the kind that [`BadFilePolicy::Skip`](crate::BadFilePolicy::Skip) skips.
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            DataError::Io { .. }
                | DataError::BadEntry { .. }
                | DataError::EmptyFile { .. }
                | DataError::TruncatedJpeg { .. }
                | DataError::Decode { .. }
                | DataError::EmptyImage { .. }
                | DataError::TooManyPixels { .. }
        )
    }
}

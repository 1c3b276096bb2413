//! tiny-data: image-folder datasets, a parallel `DataLoader` and a synthetic Imagenette.
//!
//! This is the data half of fastbook chapter 19 ("A fastai Learner from Scratch"). Each
//! chapter step has an item of the same name:
//!
//! | chapter | here |
//! |---|---|
//! | `get_image_files(path)` | [`get_image_files`] |
//! | `lbls`, `v2i = lbls.val2idx()` | [`Vocab`] |
//! | train / valid by grandparent folder | [`grandparent_split`], [`ImageFolder`] |
//! | `Dataset.__getitem__` (open, resize, RGB) | [`Dataset`], [`ImageFolderDataset`] |
//! | `collate(idxs, ds)` | [`collate`] |
//! | `DataLoader(ds, bs, shuffle, n_workers)` | [`DataLoader`] |
//! | `DataLoaders(train, valid)` | [`DataLoaders`] |
//! | `Normalize` from one batch's stats | [`Normalize`] |
//!
//! ```no_run
//! use tiny_data::{DataLoaders, FolderConfig, Normalize};
//! let dls = DataLoaders::from_folder("data/imagenette2-160", &FolderConfig::default())?;
//! let first = dls.train.iter().next().expect("a batch")?;
//! let norm = Normalize::from_batch(&first)?; // the chapter: stats of one training batch
//! for batch in &dls.train {
//!     let batch = batch?;
//!     let x = norm.apply(&batch.x)?; // (x - mean) / std, then NHWC -> NCHW
//!     assert_eq!(x.shape()[1..], [3, 64, 64]);
//! }
//! # Ok::<(), tiny_data::DataError>(())
//! ```
//!
//! Architecture invariant: this crate depends on `tiny-tensor` and nothing else of the
//! workspace; it knows nothing of models, optimisers or learners.

mod batch;
mod cache;
mod dataloaders;
mod dataset;
mod decode;
mod error;
mod files;
mod image_folder;
mod labels;
mod loader;
mod normalize;
mod pil_modes;
mod rng;
mod source;
pub mod synth;
mod targets;
mod walk;

pub use batch::{Batch, RawBatch, collate, collate_raw};
pub use cache::{CacheBudget, CacheMode};
pub use dataloaders::{DataLoaders, FolderConfig, ImageDataLoaders};
pub use dataset::{Dataset, ImageFolderDataset, ImageItem};
pub use decode::{
    Crop, ItemTransform, MAX_IMAGE_PIXELS, RandomResizedCrop, ResizeMethod, RgbImage, decode_rgb, decode_rgb_bytes,
    flip_horizontal, probe_image, resize_crop,
};
pub use error::{DataError, Result};
pub use files::{
    IMAGE_EXTENSIONS, Splits, Vocab, get_image_files, grandparent_split, has_image_extension, parent_label,
};
pub use image_folder::ImageFolder;
pub use labels::{Column, CsvColumns, DEFAULT_VALID_PCT};
pub use loader::{BadFilePolicy, BatchIter, DataLoader, SkippedFiles, default_num_workers};
pub use normalize::{ChannelStats, Normalize};
pub use pil_modes::SourceKind;
pub use rng::{Rng, mix, splitmix64};
pub use source::{BatchSource, Batches, InMemory};
pub use targets::Targets;
pub use walk::{LeftOut, LeftOutReason, walk_image_files};

/// The chapter's data pipeline, in one import: `use tiny_data::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Batch, BatchSource, DataError, DataLoader, DataLoaders, Dataset, FolderConfig, ImageDataLoaders, InMemory,
        Normalize, Vocab,
    };
}

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

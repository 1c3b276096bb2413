//! The `Dataset` trait and the image-folder dataset that decodes, resizes and optionally caches.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cache::{CacheBudget, CacheMode};

use crate::decode::{ItemTransform, RgbImage, decode_rgb};
use crate::{DataError, Result, Rng, Targets, Vocab};

/// A random-access collection of items, the chapter's `Dataset` (`__len__` and `__getitem__`).
///
/// Implementations are shared by the loader's worker threads, hence `Send + Sync`.
pub trait Dataset: Send + Sync {
    /// What one index yields.
    type Item: Send + 'static;

    /// Returns the number of items.
    fn len(&self) -> usize;

    /// Tells whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns item `index` without augmentation.
    fn get(&self, index: usize) -> Result<Self::Item>;

    /// Returns item `index`, drawing any augmentation from `rng`.
    ///
    /// The loader seeds `rng` from (seed, epoch, index), so an item's augmentation does not
    /// depend on which worker builds it. The default ignores `rng`.
    fn get_random(&self, index: usize, rng: &mut Rng) -> Result<Self::Item> {
        let _ = rng;
        self.get(index)
    }
}

/// One image ready for batching: `height x width x 3` bytes and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// RGB bytes in HWC order.
    pub pixels: Vec<u8>,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Its target, as one item's [`Targets`]: a class index into the vocabulary, or a multi-hot row.
    pub target: Targets,
}

/// Image files with labels: decoded, converted to RGB and resized on every `get`.
///
/// With a cache ([`ImageFolderDataset::cached`]) each image is decoded once and its resized bytes kept in memory
/// (`size * size * 3` bytes per image, about 116 MB for Imagenette's train split at 64x64) while the
/// [`CacheBudget`] lasts; what [`CacheMode`] says about augmentation holds.
#[derive(Debug)]
pub struct ImageFolderDataset {
    files: Vec<PathBuf>,
    targets: Targets,
    tfm: ItemTransform,
    cache: Option<Vec<OnceLock<RgbImage>>>,
    budget: Option<CacheBudget>,
}

impl ImageFolderDataset {
    /// Labels `files` by parent folder through `vocab`, as the chapter's `Dataset(fns, v2i, size)`.
    ///
    /// # Errors
    /// [`DataError::UnknownLabel`] for a file whose folder is not in `vocab`, or
    /// [`DataError::InvalidOption`] for a zero size.
    pub fn new(files: Vec<PathBuf>, vocab: &Vocab, tfm: ItemTransform) -> Result<Self> {
        let labels = files.iter().map(|f| vocab.label_of(f)).collect::<Result<Vec<_>>>()?;
        Self::from_labelled(files, labels, tfm)
    }

    /// Builds a dataset from files and their class indices, which must be as many.
    pub fn from_labelled(files: Vec<PathBuf>, labels: Vec<u32>, tfm: ItemTransform) -> Result<Self> {
        Self::from_targets(files, Targets::classes(labels), tfm)
    }

    /// Builds a dataset from files and their targets (class indices or multi-hot rows), one item of targets per
    /// file.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] for a zero size or a count of targets that is not the count of files.
    pub fn from_targets(files: Vec<PathBuf>, targets: Targets, tfm: ItemTransform) -> Result<Self> {
        if tfm.size == 0 {
            return Err(DataError::InvalidOption { option: "size", value: "0".into(), expected: "at least 1 pixel" });
        }
        if files.len() != targets.len() {
            return Err(DataError::InvalidOption {
                option: "labels",
                value: format!("{} labels for {} files", targets.len(), files.len()),
                expected: "one label per file",
            });
        }
        Ok(ImageFolderDataset { files, targets, tfm, cache: None, budget: None })
    }

    /// Turns the in-memory cache of resized images on, with no limit, or off (off by default):
    /// `cached(CacheMode::On, CacheBudget::bytes(usize::MAX))` or `cached(CacheMode::Off, ..)`.
    pub fn with_cache(self, on: bool) -> Self {
        let mode = if on { CacheMode::On } else { CacheMode::Off };
        self.cached(mode, CacheBudget::bytes(usize::MAX))
    }

    /// Keeps resized images in memory as `mode` says, while `budget` lasts (see [`CacheMode`]).
    pub fn cached(mut self, mode: CacheMode, budget: CacheBudget) -> Self {
        let on = mode.caches(self.tfm.is_random());
        self.cache = on.then(|| (0..self.files.len()).map(|_| OnceLock::new()).collect());
        self.budget = on.then_some(budget);
        self
    }

    /// Whether this dataset caches its resized images.
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Returns the files, in index order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Returns the class index of every file, in index order; for multi-label data, every file's row of flags.
    pub fn labels(&self) -> &[u32] {
        self.targets.as_slice()
    }

    /// Returns the targets of every file, in index order.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Returns the transform applied to each image.
    pub fn transform(&self) -> &ItemTransform {
        &self.tfm
    }

    /// Returns how many images the cache holds so far.
    pub fn cached_count(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.iter().filter(|s| s.get().is_some()).count())
    }

    /// Returns the file of item `index`, or an out-of-range error.
    fn file(&self, index: usize) -> Result<&Path> {
        self.files.get(index).map(PathBuf::as_path).ok_or(DataError::IndexOutOfRange { index, len: self.files.len() })
    }

    /// Loads item `index`, augmenting with `rng` when given and the transform is random.
    fn load(&self, index: usize, rng: Option<&mut Rng>) -> Result<ImageItem> {
        let path = self.file(index)?;
        let size = self.tfm.size as usize;
        let rng = rng.filter(|_| self.tfm.is_random());
        let pixels = match &self.cache {
            None => self.tfm.apply(&decode_rgb(path)?, rng, path)?,
            Some(cache) => {
                let fresh;
                let base = match cache[index].get() {
                    Some(img) => img,
                    None => {
                        let data = self.tfm.deterministic().apply(&decode_rgb(path)?, None, path)?;
                        match self.keep(index, RgbImage::opaque(self.tfm.size, self.tfm.size, data)) {
                            Ok(kept) => kept,
                            Err(over_budget) => {
                                fresh = over_budget;
                                &fresh
                            }
                        }
                    }
                };
                match rng {
                    Some(rng) => self.tfm.apply(base, Some(rng), path)?,
                    None => base.data.clone(),
                }
            }
        };
        let target = self.targets.select(&[index as u32]);
        Ok(ImageItem { pixels, height: size, width: size, target })
    }
}

impl ImageFolderDataset {
    /// Stores a freshly resized image in slot `index` when the budget still holds its bytes, and returns the
    /// stored image, or gives `img` back when it is over budget. Another worker may have filled the slot
    /// meanwhile: both images are equal, and the bytes go back to the budget.
    fn keep(&self, index: usize, img: RgbImage) -> std::result::Result<&RgbImage, RgbImage> {
        let (Some(cache), Some(budget)) = (&self.cache, &self.budget) else { return Err(img) };
        let bytes = img.data.len();
        if !budget.take(bytes) {
            return Err(img);
        }
        let mut stored = false;
        let kept = cache[index].get_or_init(|| {
            stored = true;
            img
        });
        if !stored {
            budget.give_back(bytes);
        }
        Ok(kept)
    }
}

impl Dataset for ImageFolderDataset {
    type Item = ImageItem;

    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<ImageItem> {
        self.load(index, None)
    }

    fn get_random(&self, index: usize, rng: &mut Rng) -> Result<ImageItem> {
        self.load(index, Some(rng))
    }
}

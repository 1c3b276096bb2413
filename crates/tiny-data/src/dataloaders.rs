//! `DataLoaders`: the training and validation loaders of an image folder, built in one call.

use std::path::Path;

use crate::{
    BadFilePolicy, CacheBudget, CacheMode, DataError, DataLoader, Dataset, ImageFolder, ImageFolderDataset, ImageItem,
    ItemTransform, ResizeMethod, Result, Vocab, default_num_workers,
};

/// A training and a validation loader, the chapter's `DataLoaders(train, valid)`.
pub struct DataLoaders<D: Dataset<Item = ImageItem> = ImageFolderDataset> {
    /// Shuffled training batches.
    pub train: DataLoader<D>,
    /// Validation batches in file order.
    pub valid: DataLoader<D>,
    /// The class names, indexed by label.
    pub vocab: Vocab,
}

/// Options of [`DataLoaders::from_folder`]; the defaults follow the chapter.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderConfig {
    /// Image side after resizing (the chapter: 64).
    pub size: u32,
    /// Training batch size (the chapter: 128).
    pub bs: usize,
    /// Validation batch size; `None` means twice `bs`, as the chapter.
    pub valid_bs: Option<usize>,
    /// Worker threads per loader; defaults to the number of cores.
    pub num_workers: usize,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// How images are fitted to a square (the chapter squashes).
    pub method: ResizeMethod,
    /// Random resized crop and horizontal flip on the training split.
    pub augment: bool,
    /// When to keep resized images in memory after their first decode (by default, when the transform is
    /// deterministic: the validation set always, the training set unless it is augmented).
    pub cache: CacheMode,
    /// How much memory the two caches may take together; `None` means a quarter of the machine's memory.
    pub cache_mb: Option<usize>,
    /// What to do with unreadable files.
    pub on_bad_file: BadFilePolicy,
    /// Drop the last, smaller training batch.
    pub drop_last: bool,
}

impl Default for FolderConfig {
    fn default() -> Self {
        FolderConfig {
            size: 64,
            bs: 128,
            valid_bs: None,
            num_workers: default_num_workers(),
            seed: 42,
            method: ResizeMethod::Squash,
            augment: false,
            cache: CacheMode::Auto,
            cache_mb: None,
            on_bad_file: BadFilePolicy::Fail,
            drop_last: false,
        }
    }
}

impl<D: Dataset<Item = ImageItem> + 'static> DataLoaders<D> {
    /// Pairs two loaders with the vocabulary their labels index.
    pub fn new(train: DataLoader<D>, valid: DataLoader<D>, vocab: Vocab) -> Self {
        DataLoaders { train, valid, vocab }
    }
}

impl DataLoaders<ImageFolderDataset> {
    /// Builds the loaders of an Imagenette-style folder (`train/<class>/`, `val/<class>/`).
    ///
    /// # Errors
    /// Any error of [`ImageFolder::open`], or an invalid size or batch size.
    pub fn from_folder(root: impl AsRef<Path>, cfg: &FolderConfig) -> Result<Self> {
        let folder = ImageFolder::open(root)?;
        let base = ItemTransform { method: cfg.method, ..ItemTransform::squash(cfg.size) };
        let train_tfm = if cfg.augment { base.with_augmentation() } else { base };
        let budget = cfg.cache_mb.map_or_else(CacheBudget::quarter_of_ram, CacheBudget::mebibytes);
        let train_ds =
            ImageFolderDataset::new(folder.splits.train, &folder.vocab, train_tfm)?.cached(cfg.cache, budget.clone());
        let valid_ds = ImageFolderDataset::new(folder.splits.valid, &folder.vocab, base)?.cached(cfg.cache, budget);
        let train = DataLoader::new(train_ds, cfg.bs)?
            .shuffle(true)
            .drop_last(cfg.drop_last)
            .num_workers(cfg.num_workers)
            .seed(cfg.seed)
            .on_bad_file(cfg.on_bad_file);
        // The chapter's validation batches are twice the training ones; a size whose double overflows is refused
        // rather than wrapped (to 0, which used to be reported as an invalid batch size of 0).
        let valid_bs = match cfg.valid_bs {
            Some(bs) => bs,
            None => cfg.bs.checked_mul(2).ok_or_else(|| DataError::InvalidOption {
                option: "bs",
                value: cfg.bs.to_string(),
                expected: "a batch size whose double (the validation batch size) fits in a usize",
            })?,
        };
        let valid = DataLoader::new(valid_ds, valid_bs)?
            .num_workers(cfg.num_workers)
            .seed(cfg.seed)
            .on_bad_file(cfg.on_bad_file);
        Ok(DataLoaders::new(train, valid, folder.vocab))
    }
}

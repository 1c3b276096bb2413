//! `DataLoaders`: a training and a validation loader with their vocabulary, built from an image folder in one call.

use std::path::Path;

use crate::{
    BadFilePolicy, BatchSource, CacheBudget, CacheMode, DataError, DataLoader, ImageFolder, ImageFolderDataset,
    ItemTransform, ResizeMethod, Result, Vocab, default_num_workers,
};

/// A training and a validation loader with the vocabulary their labels index, the chapter's
/// `DataLoaders(train, valid)`.
///
/// `L` is the loaders' type. [`DataLoaders::from_folder`] gives tiny-data's image [`DataLoader`]s
/// ([`ImageDataLoaders`]), whose typed methods stay at hand; the default, boxed [`BatchSource`]s, is the form a
/// learner keeps, and any `DataLoaders` converts into it with `into()`, keeping both datasets and the vocabulary
/// (so that `learn.dls.valid` still knows its files).
///
/// ```
/// use tiny_data::{BatchSource, DataLoaders, InMemory};
/// use tiny_tensor::Tensor;
/// let x = Tensor::zeros(&[4, 2]);
/// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![0, 1, 0, 1], 2)?, InMemory::new(x, vec![1, 0, 1, 0], 4)?);
/// let dls: DataLoaders = dls.into();
/// assert_eq!((dls.train.len(), dls.valid.len()), (2, 1));
/// # Ok::<(), tiny_data::DataError>(())
/// ```
pub struct DataLoaders<L = Box<dyn BatchSource>> {
    /// The training batches (shuffled when they come from [`DataLoaders::from_folder`]).
    pub train: L,
    /// The validation batches, in order.
    pub valid: L,
    /// The class names, indexed by label (empty unless the loaders were built from named classes).
    pub vocab: Vocab,
}

/// The loaders of an image folder, as [`DataLoaders::from_folder`] returns them: fastai's `ImageDataLoaders`.
pub type ImageDataLoaders = DataLoaders<DataLoader<ImageFolderDataset>>;

impl<L> DataLoaders<L> {
    /// Pairs two loaders, the chapter's `DataLoaders(train, valid)`, with an empty vocabulary.
    pub fn new(train: L, valid: L) -> Self {
        DataLoaders { train, valid, vocab: Vocab::default() }
    }

    /// Sets the class names the labels index.
    pub fn with_vocab(mut self, vocab: Vocab) -> Self {
        self.vocab = vocab;
        self
    }
}

impl<L: BatchSource> DataLoaders<L> {
    /// Whether the targets are multi-hot rows over `vocab` (multi-label data) rather than class indices, as the
    /// sources hold them.
    pub fn multi_label(&self) -> bool {
        self.train.multi_label() || self.valid.multi_label()
    }
}

impl DataLoaders {
    /// Whether the targets are multi-hot rows over `vocab` (multi-label data) rather than class indices, as the
    /// sources hold them.
    pub fn multi_label(&self) -> bool {
        self.train.multi_label() || self.valid.multi_label()
    }
}

impl<S: BatchSource + 'static> From<DataLoaders<S>> for DataLoaders {
    /// The same loaders boxed, with the vocabulary.
    fn from(dls: DataLoaders<S>) -> Self {
        DataLoaders { train: Box::new(dls.train), valid: Box::new(dls.valid), vocab: dls.vocab }
    }
}

impl std::fmt::Debug for DataLoaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (train, valid, classes) = (self.train.len(), self.valid.len(), self.vocab.len());
        write!(f, "DataLoaders(train: {train} batches, valid: {valid} batches, {classes} classes)")
    }
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
    /// Split one folder of class folders at random, this fraction for validation (fastai's `valid_pct`, with
    /// `seed`); `None` reads the `train/` and `val/` (or `valid/`) folders.
    pub valid_pct: Option<f32>,
    /// Accept a class that has images in one split only (with a warning in [`ImageFolder::warnings`]) instead of
    /// failing.
    pub accept_missing_classes: bool,
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
            valid_pct: None,
            accept_missing_classes: false,
        }
    }
}

impl ImageDataLoaders {
    /// Builds the loaders of an image folder, fastai's `ImageDataLoaders.from_folder`: Imagenette's layout
    /// (`train/<class>/`, `val/<class>/`), or with `cfg.valid_pct` one folder of class folders split at random
    /// (see [`ImageFolder::scan`]).
    ///
    /// # Errors
    /// Any error of [`ImageFolder::scan`], or an invalid size or batch size.
    pub fn from_folder(root: impl AsRef<Path>, cfg: &FolderConfig) -> Result<Self> {
        Self::from_image_folder(ImageFolder::scan(root, cfg)?, cfg)
    }

    /// The loaders of a folder already scanned (whose `left_out` and `warnings` the caller may want first).
    ///
    /// # Errors
    /// An invalid size or batch size.
    pub fn from_image_folder(folder: ImageFolder, cfg: &FolderConfig) -> Result<Self> {
        let base = ItemTransform { method: cfg.method, ..ItemTransform::squash(cfg.size) };
        let train_tfm = if cfg.augment { base.with_augmentation() } else { base };
        let budget = cfg.cache_mb.map_or_else(CacheBudget::quarter_of_ram, CacheBudget::mebibytes);
        let train_ds = ImageFolderDataset::from_targets(folder.splits.train, folder.train_labels, train_tfm)?
            .cached(cfg.cache, budget.clone());
        let valid_ds =
            ImageFolderDataset::from_targets(folder.splits.valid, folder.valid_labels, base)?.cached(cfg.cache, budget);
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
        Ok(DataLoaders::new(train, valid).with_vocab(folder.vocab))
    }
}

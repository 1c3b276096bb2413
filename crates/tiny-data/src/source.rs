//! `BatchSource`, what a learner iterates, with its two sources: an image `DataLoader` and `InMemory`.

use std::any::Any;
use std::path::PathBuf;

use tiny_tensor::Tensor;

use crate::{
    BadFilePolicy, Batch, DataError, DataLoader, Dataset, ImageFolderDataset, ImageItem, Result, Rng, Targets,
};

/// The batches of one epoch, owned so that a learner can hand itself to callbacks while iterating.
pub type Batches = Box<dyn Iterator<Item = Result<Batch>>>;

/// A source of batches epoch by epoch, fastai's `DataLoader` as its `Learner` sees one.
///
/// `batches(epoch)` must be a pure function of `epoch` and the source's own settings (seed, batch
/// size): shuffling derives from `(seed, epoch)`, so a resumed fit sees the same batches as an
/// uninterrupted one.
pub trait BatchSource {
    /// The number of batches per epoch.
    fn len(&self) -> usize;

    /// Whether an epoch yields no batch.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches of epoch `epoch`, in order.
    fn batches(&self, epoch: usize) -> Batches;

    /// The image files behind the batches when they come from an image folder (fastai's `dl.dataset`), which
    /// test-time augmentation and the interpretation views read; `None` for other sources.
    fn image_dataset(&self) -> Option<&ImageFolderDataset> {
        None
    }

    /// The files this source has left out of its batches so far (with [`BadFilePolicy::Skip`]), and what it
    /// does with unreadable files: a pass over the same files (test-time augmentation, the interpretation views)
    /// leaves out the same ones and lines its items up with the batches'.
    fn skipped_files(&self) -> (Vec<PathBuf>, BadFilePolicy) {
        (Vec::new(), BadFilePolicy::Fail)
    }

    /// Whether the batches' targets are multi-hot rows (multi-label) rather than class indices: an image folder's
    /// dataset says so by its targets, and other sources by theirs.
    fn multi_label(&self) -> bool {
        self.image_dataset().is_some_and(|ds| ds.targets().is_multi_label())
    }
}

/// A loader yields the batches of epoch `e` with `iter_epoch(e)`, whose shuffle is seeded by `(seed, e)`.
impl<D: Dataset<Item = ImageItem> + 'static> BatchSource for DataLoader<D> {
    fn len(&self) -> usize {
        DataLoader::len(self)
    }

    fn batches(&self, epoch: usize) -> Batches {
        Box::new(self.iter_epoch(epoch as u64))
    }

    fn image_dataset(&self) -> Option<&ImageFolderDataset> {
        (self.dataset().as_ref() as &dyn Any).downcast_ref()
    }

    fn skipped_files(&self) -> (Vec<PathBuf>, BadFilePolicy) {
        (DataLoader::skipped_files(self), self.bad_file_policy())
    }
}

/// A data set held in one tensor `x` (items along dimension 0) with its labels, cut into batches of
/// `bs`, optionally shuffled each epoch with a permutation seeded by `(seed, epoch)`.
///
/// ```
/// use tiny_data::{BatchSource, InMemory};
/// use tiny_tensor::Tensor;
/// let x = Tensor::from_vec((0..10).map(|v| v as f32).collect(), &[5, 2]).unwrap();
/// let src = InMemory::new(x, vec![0, 1, 0, 1, 0], 2).unwrap().shuffle(7);
/// assert_eq!(src.len(), 3);
/// let sizes: Vec<usize> = src.batches(0).map(|b| b.unwrap().len()).collect();
/// assert_eq!(sizes, [2, 2, 1]);
/// ```
#[derive(Debug, Clone)]
pub struct InMemory {
    x: Tensor,
    y: Targets,
    bs: usize,
    shuffle: Option<u64>,
}

impl InMemory {
    /// A source over `x` (`[n, ...]`) and `y` (`n` class indices) in batches of `bs`, in order.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] when `bs` is 0 or the labels do not match `x`'s first dimension.
    pub fn new(x: Tensor, y: Vec<u32>, bs: usize) -> Result<Self> {
        Self::with_targets(x, Targets::classes(y), bs)
    }

    /// A source over `x` (`[n, ...]`) and any targets of `n` items (multi-hot rows, say) in batches of `bs`.
    ///
    /// # Errors
    /// As [`InMemory::new`].
    pub fn with_targets(x: Tensor, y: Targets, bs: usize) -> Result<Self> {
        if bs == 0 {
            return Err(DataError::InvalidOption { option: "batch size", value: "0".into(), expected: "at least 1" });
        }
        if x.rank() == 0 || x.shape()[0] != y.len() {
            return Err(DataError::InvalidOption {
                option: "InMemory labels",
                value: format!("{} labels for x of shape {:?}", y.len(), x.shape()),
                expected: "one label per item along x's first dimension",
            });
        }
        Ok(InMemory { x, y, bs, shuffle: None })
    }

    /// Shuffles the items every epoch with a permutation drawn from `(seed, epoch)`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// The item order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.y.len() as u32).collect();
        if let Some(seed) = self.shuffle {
            Rng::from_parts(&[seed, epoch as u64]).shuffle(&mut idx);
        }
        idx
    }
}

impl BatchSource for InMemory {
    fn len(&self) -> usize {
        self.y.len().div_ceil(self.bs)
    }

    fn multi_label(&self) -> bool {
        self.y.is_multi_label()
    }

    fn batches(&self, epoch: usize) -> Batches {
        let order = self.order(epoch);
        let (x, y, bs) = (self.x.clone(), self.y.clone(), self.bs);
        Box::new((0..order.len()).step_by(bs).map(move |start| {
            let idx = &order[start..(start + bs).min(order.len())];
            Ok(Batch { x: x.index_select(0, idx)?, y: y.select(idx) })
        }))
    }
}

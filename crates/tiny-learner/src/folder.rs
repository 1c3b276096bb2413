//! tiny-data's image-folder loaders as the learner's `BatchSource`s.

use tiny_data::{DataLoader, DataLoaders, Dataset, ImageItem};

use crate::{Batch, BatchIter, BatchSource, LearnerError, Loaders};

/// A tiny-data loader yields the batches of epoch `e` with `iter_epoch(e)`, whose shuffle is seeded by
/// `(seed, e)`, so a resumed fit sees the same batches.
impl<D: Dataset<Item = ImageItem> + 'static> BatchSource for DataLoader<D> {
    fn len(&self) -> usize {
        DataLoader::len(self)
    }

    fn batches(&self, epoch: usize) -> BatchIter {
        Box::new(self.iter_epoch(epoch as u64).map(|b| b.map(|b| Batch { x: b.x, y: b.y }).map_err(LearnerError::from)))
    }
}

impl<D: Dataset<Item = ImageItem> + 'static> From<DataLoaders<D>> for Loaders {
    /// The training and validation loaders; the vocabulary is dropped (keep `dls.vocab.len()` first).
    fn from(dls: DataLoaders<D>) -> Self {
        Loaders { train: Box::new(dls.train), valid: Box::new(dls.valid) }
    }
}

//! What the learner trains on: `Batch`, the `BatchSource` trait, `Loaders` and an in-memory source.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tiny_tensor::Tensor;

use crate::{LearnerError, Result};

/// One batch: inputs `x` (images NHWC as a loader yields them, or anything the model takes after
/// `SetupLearner`) and one class index per item.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The inputs, batch dimension first.
    pub x: Tensor,
    /// The targets, one per item.
    pub y: Vec<u32>,
}

impl Batch {
    /// An empty batch, the learner's placeholder before the first one arrives.
    pub fn empty() -> Self {
        Batch { x: Tensor::zeros(&[0]), y: Vec::new() }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The batches of one epoch, owned so that the learner can hand itself to callbacks while iterating.
pub type BatchIter = Box<dyn Iterator<Item = Result<Batch>>>;

/// A source of batches, the learner's view of a data loader (fastai's `DataLoader`).
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
    fn batches(&self, epoch: usize) -> BatchIter;
}

/// A training and a validation source, the chapter's `DataLoaders(train, valid)`.
pub struct Loaders {
    /// The training batches (usually shuffled).
    pub train: Box<dyn BatchSource>,
    /// The validation batches.
    pub valid: Box<dyn BatchSource>,
}

impl Loaders {
    /// Pairs a training and a validation source.
    pub fn new(train: impl BatchSource + 'static, valid: impl BatchSource + 'static) -> Self {
        Loaders { train: Box::new(train), valid: Box::new(valid) }
    }
}

impl std::fmt::Debug for Loaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaders(train: {} batches, valid: {} batches)", self.train.len(), self.valid.len())
    }
}

/// A data set held in one tensor `x` (items along dimension 0) with its labels, cut into batches of
/// `bs`, optionally shuffled each epoch with a permutation seeded by `(seed, epoch)`.
///
/// ```
/// use tiny_learner::{BatchSource, InMemory};
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
    y: Vec<u32>,
    bs: usize,
    shuffle: Option<u64>,
}

impl InMemory {
    /// A source over `x` (`[n, ...]`) and `y` (`n` labels) in batches of `bs`, in order.
    pub fn new(x: Tensor, y: Vec<u32>, bs: usize) -> Result<Self> {
        let bad = |msg: String| LearnerError::InvalidArgument { what: "InMemory::new", msg };
        if bs == 0 {
            return Err(bad("the batch size must be at least 1".into()));
        }
        if x.rank() == 0 || x.shape()[0] != y.len() {
            return Err(bad(format!("x has shape {:?} but there are {} labels", x.shape(), y.len())));
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
            idx.shuffle(&mut StdRng::seed_from_u64(mix(seed, epoch as u64)));
        }
        idx
    }
}

impl BatchSource for InMemory {
    fn len(&self) -> usize {
        self.y.len().div_ceil(self.bs)
    }

    fn batches(&self, epoch: usize) -> BatchIter {
        let order = self.order(epoch);
        let (x, y, bs) = (self.x.clone(), self.y.clone(), self.bs);
        Box::new((0..order.len()).step_by(bs).map(move |start| {
            let idx = &order[start..(start + bs).min(order.len())];
            Ok(Batch { x: x.index_select(0, idx)?, y: idx.iter().map(|&i| y[i as usize]).collect() })
        }))
    }
}

/// Mixes a seed with a counter (SplitMix64's finaliser), so that nearby epochs get unrelated streams.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

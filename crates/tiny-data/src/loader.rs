//! The `DataLoader`: seeded shuffling, a crossbeam-channel worker pool, in-order batches and
//! bounded prefetch, with workers stopped and joined when the iterator is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::{Batch, DataError, Dataset, ImageItem, Result, Rng, collate};

/// What the loader does with a file that cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadFilePolicy {
    /// Yield an `Err` naming the file in place of its batch (the default).
    #[default]
    Fail,
    /// Leave the file out of its batch and record it in [`DataLoader::skipped_files`].
    Skip,
}

/// A shared view of the files that a [`DataLoader`] left out under [`BadFilePolicy::Skip`].
#[derive(Debug, Clone, Default)]
pub struct SkippedFiles(Arc<Mutex<BTreeSet<PathBuf>>>);

impl SkippedFiles {
    /// Returns the files skipped so far, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        lock(&self.0).iter().cloned().collect()
    }

    /// Returns how many distinct files have been skipped so far.
    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }
}

/// Stream tag that keeps shuffle randomness apart from per-item randomness.
const SHUFFLE_TAG: u64 = 0x0053_4855_4646_4C45;

/// Returns the default worker count: the number of cores.
pub fn default_num_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Batches a [`Dataset`] of images, the chapter's `DataLoader(ds, bs, shuffle, n_workers)`.
///
/// Every call to [`DataLoader::iter`] is one epoch: with `shuffle` the order is a permutation
/// seeded by (seed, epoch), and each item's augmentation is seeded by (seed, epoch, index), so
/// the batches are the same whatever the number of workers.
pub struct DataLoader<D: Dataset<Item = ImageItem>> {
    dataset: Arc<D>,
    bs: usize,
    shuffle: bool,
    drop_last: bool,
    num_workers: usize,
    prefetch: Option<usize>,
    seed: u64,
    policy: BadFilePolicy,
    epoch: AtomicU64,
    skipped: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl<D: Dataset<Item = ImageItem> + 'static> DataLoader<D> {
    /// Creates an unshuffled loader of batches of `bs` items with one worker per core.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] when `bs` is zero.
    pub fn new(dataset: D, bs: usize) -> Result<Self> {
        Self::from_arc(Arc::new(dataset), bs)
    }

    /// Like [`DataLoader::new`] for a dataset that is already shared.
    pub fn from_arc(dataset: Arc<D>, bs: usize) -> Result<Self> {
        if bs == 0 {
            return Err(DataError::InvalidOption { option: "batch size", value: "0".into(), expected: "at least 1" });
        }
        Ok(DataLoader {
            dataset,
            bs,
            shuffle: false,
            drop_last: false,
            num_workers: default_num_workers(),
            prefetch: None,
            seed: 0,
            policy: BadFilePolicy::Fail,
            epoch: AtomicU64::new(0),
            skipped: Arc::default(),
        })
    }

    /// Shuffles the order every epoch.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Drops the last batch when it is smaller than `bs`.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Sets the number of worker threads; `0` builds batches on the calling thread.
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// Sets how many batches may be built ahead of the consumer (default twice the workers).
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = Some(batches.max(1));
        self
    }

    /// Sets the seed of shuffling and augmentation.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets what happens to unreadable files.
    pub fn on_bad_file(mut self, policy: BadFilePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Returns what happens to unreadable files.
    pub fn bad_file_policy(&self) -> BadFilePolicy {
        self.policy
    }

    /// Returns the dataset.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// Returns the batch size.
    pub fn bs(&self) -> usize {
        self.bs
    }

    /// Returns the number of worker threads.
    pub fn workers(&self) -> usize {
        self.num_workers
    }

    /// Returns the number of batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last { n / self.bs } else { n.div_ceil(self.bs) }
    }

    /// Tells whether an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the epoch the next [`DataLoader::iter`] will run.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Returns the files skipped so far under [`BadFilePolicy::Skip`], sorted.
    pub fn skipped_files(&self) -> Vec<PathBuf> {
        lock(&self.skipped).iter().cloned().collect()
    }

    /// Returns how many distinct files have been skipped so far.
    pub fn skipped_count(&self) -> usize {
        lock(&self.skipped).len()
    }

    /// Returns a handle on the record of skipped files that stays readable after the loader has been moved
    /// into a learner; it sees the files that later epochs skip too.
    pub fn skipped(&self) -> SkippedFiles {
        SkippedFiles(Arc::clone(&self.skipped))
    }

    /// Returns the item order of `epoch`: identity, or a seeded permutation when shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            Rng::from_parts(&[self.seed, epoch, SHUFFLE_TAG]).shuffle(&mut order);
        }
        order
    }

    /// Starts the next epoch.
    pub fn iter(&self) -> BatchIter<D> {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed);
        self.iter_epoch(epoch)
    }

    /// Iterates epoch `epoch` without advancing the loader's epoch counter.
    pub fn iter_epoch(&self, epoch: u64) -> BatchIter<D> {
        let n_batches = self.len();
        let job = Arc::new(EpochJob {
            dataset: Arc::clone(&self.dataset),
            order: self.order(epoch),
            bs: self.bs,
            seed: self.seed,
            epoch,
            policy: self.policy,
            skipped: Arc::clone(&self.skipped),
            stop: AtomicBool::new(false),
        });
        let prefetch = self.prefetch.unwrap_or(2 * self.num_workers).max(1);
        let inner = if self.num_workers == 0 || n_batches == 0 {
            Inner::Serial
        } else {
            match Pool::start(&job, self.num_workers.min(n_batches), prefetch, n_batches) {
                Ok(pool) => Inner::Pool(pool),
                Err(e) => Inner::Failed(Some(e)),
            }
        };
        BatchIter { job, next: 0, n_batches, inner }
    }
}

impl<D: Dataset<Item = ImageItem> + 'static> IntoIterator for &DataLoader<D> {
    type Item = Result<Batch>;
    type IntoIter = BatchIter<D>;

    fn into_iter(self) -> BatchIter<D> {
        self.iter()
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a worker needs to build any batch of one epoch.
struct EpochJob<D> {
    dataset: Arc<D>,
    order: Vec<usize>,
    bs: usize,
    seed: u64,
    epoch: u64,
    policy: BadFilePolicy,
    skipped: Arc<Mutex<BTreeSet<PathBuf>>>,
    stop: AtomicBool,
}

impl<D: Dataset<Item = ImageItem>> EpochJob<D> {
    /// Builds batch `b`; `Ok(None)` when every item was skipped or the epoch was stopped.
    fn build(&self, b: usize) -> Result<Option<Batch>> {
        let start = b * self.bs;
        let end = (start + self.bs).min(self.order.len());
        let mut items = Vec::with_capacity(end - start);
        for &index in &self.order[start..end] {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let mut rng = Rng::from_parts(&[self.seed, self.epoch, index as u64]);
            match self.dataset.get_random(index, &mut rng) {
                Ok(item) => items.push(item),
                Err(e) if self.policy == BadFilePolicy::Skip && e.is_bad_file() => {
                    if let Some(path) = e.path() {
                        lock(&self.skipped).insert(path.to_path_buf());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        collate(&items).map(Some)
    }
}

/// A built batch, tagged with its number.
type Done = (usize, Result<Option<Batch>>);

/// The worker threads of one epoch and the channels that feed and drain them.
struct Pool {
    /// Batch numbers to build; dropping it tells idle workers to exit.
    tickets: Option<Sender<usize>>,
    results: Receiver<Done>,
    /// Batches received ahead of the one the consumer waits for.
    pending: BTreeMap<usize, Result<Option<Batch>>>,
    /// The next batch number to hand out.
    issued: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Spawns `n` workers and hands out the first `prefetch` batch numbers.
    ///
    /// At most `prefetch` batches are ever queued, being built or waiting to be yielded: a new
    /// number is handed out only when the consumer takes a batch, so memory stays bounded.
    fn start<D: Dataset<Item = ImageItem> + 'static>(
        job: &Arc<EpochJob<D>>,
        n: usize,
        prefetch: usize,
        n_batches: usize,
    ) -> Result<Self> {
        let (ticket_tx, ticket_rx) = crossbeam_channel::bounded::<usize>(prefetch);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let mut pool = Pool {
            tickets: Some(ticket_tx),
            results: done_rx,
            pending: BTreeMap::new(),
            issued: 0,
            workers: Vec::with_capacity(n),
        };
        for w in 0..n {
            let (job, rx, tx) = (Arc::clone(job), ticket_rx.clone(), done_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("tiny-data-worker-{w}"))
                .spawn(move || worker(&job, &rx, &tx))
                .map_err(|source| DataError::Spawn { source })?;
            pool.workers.push(handle);
        }
        for _ in 0..prefetch.min(n_batches) {
            pool.issue(n_batches);
        }
        Ok(pool)
    }

    /// Hands out the next batch number, if any is left.
    fn issue(&mut self, n_batches: usize) {
        if self.issued < n_batches {
            if let Some(tx) = &self.tickets {
                // Never blocks: at most `prefetch` numbers are outstanding, the channel's capacity.
                let _ = tx.send(self.issued);
            }
            self.issued += 1;
        }
    }

    /// Waits for batch `b`, keeping any later batches that arrive first.
    fn take(&mut self, b: usize) -> Result<Option<Batch>> {
        loop {
            if let Some(r) = self.pending.remove(&b) {
                return r;
            }
            match self.results.recv() {
                Ok((k, r)) => {
                    self.pending.insert(k, r);
                }
                // Every worker is gone without sending `b`: one of them panicked.
                Err(_) => return Err(DataError::WorkerPanicked { batch: b }),
            }
        }
    }
}

/// A worker: builds the batches whose numbers it receives until told to stop.
fn worker<D: Dataset<Item = ImageItem>>(job: &EpochJob<D>, rx: &Receiver<usize>, tx: &Sender<Done>) {
    while let Ok(b) = rx.recv() {
        if job.stop.load(Ordering::Relaxed) {
            break;
        }
        let guard = PanicGuard { tx, batch: b };
        let result = job.build(b);
        drop(guard);
        if tx.send((b, result)).is_err() {
            break;
        }
    }
}

/// Reports the batch a worker was building if the worker panics, so the consumer never hangs.
struct PanicGuard<'a> {
    tx: &'a Sender<Done>,
    batch: usize,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let err = DataError::WorkerPanicked { batch: self.batch };
            let _ = self.tx.send((self.batch, Err(err)));
        }
    }
}

/// How an epoch's batches are being produced.
enum Inner {
    /// On the calling thread.
    Serial,
    /// By a worker pool.
    Pool(Pool),
    /// The pool could not start; the error is yielded once.
    Failed(Option<DataError>),
}

/// The batches of one epoch, in order. Dropping it stops and joins the workers.
pub struct BatchIter<D: Dataset<Item = ImageItem>> {
    job: Arc<EpochJob<D>>,
    next: usize,
    n_batches: usize,
    inner: Inner,
}

impl<D: Dataset<Item = ImageItem>> BatchIter<D> {
    /// Returns the number of batches of the epoch, including those already yielded.
    pub fn n_batches(&self) -> usize {
        self.n_batches
    }
}

impl<D: Dataset<Item = ImageItem>> Iterator for BatchIter<D> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.n_batches {
            let b = self.next;
            self.next += 1;
            let result = match &mut self.inner {
                Inner::Serial => self.job.build(b),
                Inner::Pool(pool) => {
                    let r = pool.take(b);
                    pool.issue(self.n_batches);
                    r
                }
                Inner::Failed(err) => {
                    self.next = self.n_batches;
                    return err.take().map(Err);
                }
            };
            match result {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.n_batches - self.next))
    }
}

impl<D: Dataset<Item = ImageItem>> Drop for BatchIter<D> {
    fn drop(&mut self) {
        self.job.stop.store(true, Ordering::Relaxed);
        if let Inner::Pool(pool) = &mut self.inner {
            // Idle workers wake on the closed channel; busy ones see `stop` before their next
            // item, so joining waits for at most one image per worker.
            pool.tickets = None;
            for handle in pool.workers.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

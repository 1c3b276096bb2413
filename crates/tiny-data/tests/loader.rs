//! Tests of the DataLoader: order, seeded shuffling, worker-count independence, bounded
//! prefetch, prompt shutdown, bad-file errors and skipping, and Normalize statistics.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TempDir, write};
use tiny_data::{
    BadFilePolicy, Batch, CacheBudget, CacheMode, DataError, DataLoader, DataLoaders, Dataset, FolderConfig,
    ImageFolder, ImageFolderDataset, ImageItem, ItemTransform, Normalize, Result, Rng, default_num_workers,
};

/// An in-memory dataset: item `i` has label `i` and 2x2 pixels of value `i % 256`, plus one
/// random byte when augmenting; it can be slowed down, and counts the items it built.
struct Counting {
    n: usize,
    delay: Duration,
    built: AtomicUsize,
    panic_at: Option<usize>,
}

impl Counting {
    fn new(n: usize) -> Self {
        Counting { n, delay: Duration::ZERO, built: AtomicUsize::new(0), panic_at: None }
    }
}

impl Dataset for Counting {
    type Item = ImageItem;

    fn len(&self) -> usize {
        self.n
    }

    fn get(&self, i: usize) -> Result<ImageItem> {
        assert_ne!(Some(i), self.panic_at, "deliberate test panic");
        std::thread::sleep(self.delay);
        self.built.fetch_add(1, Ordering::SeqCst);
        Ok(ImageItem { pixels: vec![(i % 256) as u8; 12], height: 2, width: 2, target: vec![i as u32].into() })
    }

    fn get_random(&self, i: usize, rng: &mut Rng) -> Result<ImageItem> {
        let mut item = self.get(i)?;
        item.pixels[0] = rng.below(256) as u8;
        Ok(item)
    }
}

/// A batch as plain values, comparable with `==`: shape, pixels and labels.
type Plain = (Vec<usize>, Vec<f32>, Vec<u32>);

fn plain(b: &Batch) -> Plain {
    (b.x.shape().to_vec(), b.x.to_vec(), b.y.as_slice().to_vec())
}

fn labels(batches: &[Plain]) -> Vec<u32> {
    batches.iter().flat_map(|b| b.2.iter().copied()).collect()
}

/// Runs one epoch and returns its batches as plain values.
fn collect<D: Dataset<Item = ImageItem> + 'static>(dl: &DataLoader<D>) -> Vec<Plain> {
    dl.iter().map(|b| plain(&b.unwrap())).collect()
}

fn sizes(batches: &[Plain]) -> Vec<usize> {
    batches.iter().map(|b| b.2.len()).collect()
}

#[test]
fn without_shuffle_batches_follow_dataset_order() {
    for workers in [0, 1, 3] {
        let dl = DataLoader::new(Counting::new(23), 5).unwrap().num_workers(workers);
        assert_eq!(dl.len(), 5);
        let batches = collect(&dl);
        assert_eq!(sizes(&batches), [5, 5, 5, 5, 3]);
        assert_eq!(labels(&batches), (0..23).collect::<Vec<u32>>(), "workers {workers}");
        assert_eq!(batches[0].0, [5, 2, 2, 3]);
    }
}

#[test]
fn drop_last_drops_the_short_batch() {
    let dl = DataLoader::new(Counting::new(23), 5).unwrap().drop_last(true).num_workers(2);
    assert_eq!(dl.len(), 4);
    assert_eq!(labels(&collect(&dl)), (0..20).collect::<Vec<u32>>());
}

#[test]
fn shuffle_is_seeded_and_reshuffles_every_epoch() {
    let make = |seed| DataLoader::new(Counting::new(50), 8).unwrap().shuffle(true).seed(seed).num_workers(2);
    let dl = make(1);
    let e0 = labels(&collect(&dl));
    let e1 = labels(&collect(&dl));
    assert_ne!(e0, e1, "a new epoch has a new order");
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<u32>>(), "each item once per epoch");
    let again = make(1);
    assert_eq!(labels(&collect(&again)), e0);
    assert_eq!(labels(&collect(&again)), e1);
    assert_ne!(labels(&collect(&make(2))), e0, "another seed, another order");
    assert_eq!(dl.epoch(), 2);
}

#[test]
fn same_batches_for_1_2_and_4_workers_with_shuffle_and_augmentation() {
    let dir = TempDir::new("workers");
    let root = dir.path().join("synth");
    tiny_data::synth::generate(&root, 0.01, 11).unwrap();
    let run = |workers| {
        let cfg =
            FolderConfig { size: 24, bs: 16, num_workers: workers, seed: 5, augment: true, ..FolderConfig::default() };
        let dls = DataLoaders::from_folder(&root, &cfg).unwrap();
        (collect(&dls.train), collect(&dls.train), collect(&dls.valid))
    };
    let one = run(1);
    assert_eq!(one.0.len(), 7);
    assert_ne!(one.0, one.1, "epochs differ");
    assert_eq!(run(2), one);
    assert_eq!(run(4), one);
    // Without augmentation and with batches bigger than a split, each split comes whole.
    let cfg = FolderConfig { size: 24, bs: 200, num_workers: 2, ..FolderConfig::default() };
    let plain_dls = DataLoaders::from_folder(&root, &cfg).unwrap();
    assert_eq!(plain_dls.train.iter().next().unwrap().unwrap().len(), 97);
    assert_eq!(plain_dls.valid.iter().next().unwrap().unwrap().len(), 40);
}

#[test]
fn cache_gives_the_same_batches_and_fills_once() {
    let dir = TempDir::new("cache");
    let root = dir.path().join("synth");
    tiny_data::synth::generate(&root, 0.005, 2).unwrap();
    let cfg = |cache| FolderConfig { size: 16, bs: 8, num_workers: 2, cache, ..FolderConfig::default() };
    let uncached = DataLoaders::from_folder(&root, &cfg(CacheMode::Off)).unwrap();
    let cached = DataLoaders::from_folder(&root, &cfg(CacheMode::Auto)).unwrap();
    assert!(!uncached.valid.dataset().caches());
    assert_eq!(cached.valid.dataset().cached_count(), 0);
    let first = collect(&cached.valid);
    assert_eq!(cached.valid.dataset().cached_count(), cached.valid.dataset().len());
    assert_eq!(first, collect(&uncached.valid));
    assert_eq!(collect(&cached.valid), first);
}

#[test]
fn auto_caches_deterministic_splits_only_and_on_caches_augmented_ones_too() {
    let dir = TempDir::new("cache-modes");
    let root = dir.path().join("synth");
    tiny_data::synth::generate(&root, 0.005, 2).unwrap();
    let cfg = |cache| FolderConfig { size: 16, bs: 8, num_workers: 2, augment: true, cache, ..FolderConfig::default() };
    let auto = DataLoaders::from_folder(&root, &cfg(CacheMode::Auto)).unwrap();
    assert!(auto.valid.dataset().caches(), "the validation transform is deterministic");
    assert!(!auto.train.dataset().caches(), "a random crop reads the full picture unless asked otherwise");
    let on = DataLoaders::from_folder(&root, &cfg(CacheMode::On)).unwrap();
    assert!(on.train.dataset().caches());
    let off = DataLoaders::from_folder(&root, &cfg(CacheMode::Off)).unwrap();
    assert!(!off.valid.dataset().caches() && !off.train.dataset().caches());
}

#[test]
fn images_beyond_the_budget_are_decoded_as_without_a_cache() {
    let dir = TempDir::new("cache-budget");
    let root = dir.path().join("synth");
    tiny_data::synth::generate(&root, 0.005, 2).unwrap();
    let folder = ImageFolder::open(&root).unwrap();
    let make = |budget| {
        let ds =
            ImageFolderDataset::new(folder.splits.valid.clone(), &folder.vocab, ItemTransform::squash(16)).unwrap();
        DataLoader::new(ds.cached(CacheMode::Auto, budget), 8).unwrap().num_workers(2)
    };
    // Room for five 16x16 RGB images, shared by two datasets.
    let budget = CacheBudget::bytes(5 * 16 * 16 * 3);
    let (small, other) = (make(budget.clone()), make(budget.clone()));
    let full = make(CacheBudget::bytes(usize::MAX));
    let want = collect(&full);
    assert_eq!(collect(&small), want);
    assert_eq!(collect(&other), want);
    assert_eq!(small.dataset().cached_count() + other.dataset().cached_count(), 5);
    assert_eq!(budget.left(), 0);
    assert_eq!(collect(&small), want, "a second pass reads the cached images and decodes the rest");
}

#[test]
fn prefetch_is_bounded() {
    let ds = Arc::new(Counting::new(400));
    let dl = DataLoader::from_arc(Arc::clone(&ds), 4).unwrap().num_workers(2).prefetch(3);
    let mut it = dl.iter();
    it.next().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let built = ds.built.load(Ordering::SeqCst);
    // One batch taken plus at most three queued or being built.
    assert!(built <= 4 * 4, "built {built} items ahead");
}

#[test]
fn dropping_mid_epoch_stops_and_joins_workers_promptly() {
    let ds = Arc::new(Counting { delay: Duration::from_millis(20), ..Counting::new(400) });
    let dl = DataLoader::from_arc(Arc::clone(&ds), 4).unwrap().num_workers(4);
    let mut it = dl.iter();
    it.next().unwrap().unwrap();
    let t0 = Instant::now();
    drop(it);
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(500), "drop took {took:?}");
    // Workers held clones of the dataset: only the test's and the loader's remain.
    assert_eq!(Arc::strong_count(&ds), 2, "worker threads are gone");
    assert!(ds.built.load(Ordering::SeqCst) < 100, "the epoch did not run to the end");
}

#[test]
fn a_panicking_dataset_gives_an_error_not_a_hang() {
    let ds = Counting { panic_at: Some(9), ..Counting::new(20) };
    let dl = DataLoader::new(ds, 4).unwrap().num_workers(2);
    let results: Vec<_> = dl.iter().collect();
    assert_eq!(results.len(), 5);
    assert!(matches!(results[2], Err(DataError::WorkerPanicked { batch: 2 })));
    assert!(results[0].is_ok() && results[1].is_ok());
}

/// Writes a 4-class folder with good JPEGs and three bad files in `train`.
fn folder_with_bad_files(root: &std::path::Path) -> Vec<PathBuf> {
    common::make_folder(root, &["train", "val"], &["a", "b"], 3);
    let good = common::jpeg_bytes(24, 16, |x, _| [x as u8, 0, 0]);
    let bad = vec![root.join("train/a/truncated.jpg"), root.join("train/b/empty.jpg"), root.join("train/b/text.jpg")];
    write(&bad[0], &good[..good.len() / 2]);
    write(&bad[1], b"");
    write(&bad[2], b"just some text\n");
    bad
}

#[test]
fn bad_files_arrive_as_errors_naming_them() {
    let dir = TempDir::new("bad-loader");
    let bad = folder_with_bad_files(dir.path());
    let cfg = FolderConfig { size: 8, bs: 1, num_workers: 2, ..FolderConfig::default() };
    let dls = DataLoaders::from_folder(dir.path(), &cfg).unwrap();
    let results: Vec<_> = dls.train.iter().collect();
    assert_eq!(results.len(), 9);
    let mut named: Vec<PathBuf> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| {
            assert!(e.to_string().contains(&*e.path().unwrap().to_string_lossy()), "{e}");
            e.path().unwrap().to_path_buf()
        })
        .collect();
    named.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(named, expected);
}

#[test]
fn skip_policy_leaves_bad_files_out_and_counts_them() {
    let dir = TempDir::new("skip-loader");
    let bad = folder_with_bad_files(dir.path());
    let cfg =
        FolderConfig { size: 8, bs: 4, num_workers: 2, on_bad_file: BadFilePolicy::Skip, ..FolderConfig::default() };
    let dls = DataLoaders::from_folder(dir.path(), &cfg).unwrap();
    // A handle taken before the epochs still sees what they skip, as the train example reads it after the fit.
    let handle = dls.train.skipped();
    for _ in 0..2 {
        let batches = collect(&dls.train);
        assert_eq!(sizes(&batches).iter().sum::<usize>(), 6);
    }
    let mut expected = bad;
    expected.sort();
    assert_eq!(dls.train.skipped_files(), expected);
    assert_eq!(dls.train.skipped_count(), 3);
    assert_eq!((handle.files(), handle.count()), (expected, 3));
}

#[test]
fn defaults_and_invalid_options() {
    let dl = DataLoader::new(Counting::new(3), 2).unwrap();
    assert_eq!(dl.workers(), default_num_workers());
    assert!(default_num_workers() >= 1);
    assert!(matches!(DataLoader::new(Counting::new(3), 0), Err(DataError::InvalidOption { .. })));
    let empty = DataLoader::new(Counting::new(0), 2).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.iter().count(), 0);
}

#[test]
fn normalize_stats_match_torch_conventions() {
    let dl = DataLoader::new(Counting::new(10), 5).unwrap().num_workers(0);
    let first = dl.iter().next().unwrap().unwrap();
    let norm = Normalize::from_batch(&first).unwrap();
    // Mean and unbiased (n - 1) std over N, H and W, as torch's `xb.std((0, 1, 2))`.
    let x = first.x.to_vec();
    for c in 0..3 {
        let vals: Vec<f64> = x.iter().skip(c).step_by(3).map(|&v| v as f64).collect();
        let n = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / n;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!((norm.mean[c] as f64 - mean).abs() < 1e-6);
        assert!((norm.std[c] as f64 - std).abs() < 1e-6);
    }
    let whole = Normalize::from_batches(dl.iter()).unwrap();
    // Channel 1 is untouched by the test dataset's augmentation: items 0..10 over 255.
    assert!((whole.mean[1] as f64 - 4.5 / 255.0).abs() < 1e-6);

    // apply: (x - mean) / std per channel, then NHWC -> NCHW.
    let y = norm.apply(&first.x).unwrap();
    assert_eq!(y.shape(), &[5, 3, 2, 2]);
    let y = y.to_vec();
    for (n, h, w, c) in [(0, 0, 0, 1), (3, 1, 0, 2), (4, 1, 1, 0)] {
        let nhwc = x[((n * 2 + h) * 2 + w) * 3 + c];
        let nchw = y[((n * 3 + c) * 2 + h) * 2 + w];
        assert!((nchw - (nhwc - norm.mean[c]) / norm.std[c]).abs() < 1e-5);
    }
    let mut raw = x.clone();
    norm.apply_in_place(&mut raw);
    assert!((raw[4] - (x[4] - norm.mean[1]) / norm.std[1]).abs() < 1e-6);
}

#[test]
fn a_batch_size_whose_double_overflows_is_named_not_wrapped() {
    // `--bs 9223372036854775808` used to be reported as "invalid batch size: 0": 2 * bs wrapped (issue 19, fault 7).
    let dir = TempDir::new("huge-bs");
    let root = dir.path().join("synth");
    tiny_data::synth::generate(&root, 0.005, 1).unwrap();
    let bs = usize::MAX / 2 + 1;
    let err = DataLoaders::from_folder(&root, &FolderConfig { bs, ..FolderConfig::default() }).err().unwrap();
    assert!(matches!(err, tiny_data::DataError::InvalidOption { option: "bs", .. }), "{err}");
    assert!(err.to_string().contains(&bs.to_string()), "{err}");
}

//! Tests of the folder layouts `ImageFolder::scan` reads (split, unsplit, nested, linked), what it leaves out and
//! why, and its warnings and layout errors.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{TempDir, make_folder, write, write_jpeg};
use tiny_data::{
    BadFilePolicy, DataError, Dataset, FolderConfig, ImageDataLoaders, ImageFolder, LeftOutReason, walk_image_files,
};

fn unsplit(pct: f32, seed: u64) -> FolderConfig {
    FolderConfig { valid_pct: Some(pct), seed, bs: 4, ..FolderConfig::default() }
}

fn skip() -> FolderConfig {
    FolderConfig { on_bad_file: BadFilePolicy::Skip, bs: 4, ..FolderConfig::default() }
}

/// The file names of a split, relative to `root`.
fn rel(root: &Path, files: &[std::path::PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn an_unsplit_folder_is_split_at_random_as_fastais_random_splitter() {
    let dir = TempDir::new("unsplit");
    make_folder(dir.path(), &["."], &["cat", "dog"], 10);
    let a = ImageFolder::scan(dir.path(), &unsplit(0.2, 7)).unwrap();
    // fastai's RandomSplitter: int(valid_pct * n) items for validation, the rest for training.
    assert_eq!((a.splits.train.len(), a.splits.valid.len()), (16, 4));
    assert_eq!(a.vocab.names(), ["cat", "dog"]);
    assert_eq!(a.train_labels.len(), 16);
    for (file, &label) in a.splits.valid.iter().zip(a.valid_labels.as_slice()) {
        let class = file.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(a.vocab.names()[label as usize], class, "{}", file.display());
    }
    let again = ImageFolder::scan(dir.path(), &unsplit(0.2, 7)).unwrap();
    assert_eq!(again.splits.valid, a.splits.valid, "the same seed gives the same split");
    let other = ImageFolder::scan(dir.path(), &unsplit(0.2, 8)).unwrap();
    assert_ne!(other.splits.valid, a.splits.valid, "another seed gives another split");
    let mut all = [a.splits.train.clone(), a.splits.valid.clone()].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "every image lands in exactly one split");
}

#[test]
fn an_unsplit_folder_trains_through_the_loaders() {
    let dir = TempDir::new("unsplit-loaders");
    make_folder(dir.path(), &["."], &["a", "b", "c"], 4);
    // With 3 validation images of 3 classes, a class may have none of them: accepted, with a warning.
    let cfg = FolderConfig { size: 8, accept_missing_classes: true, ..unsplit(0.25, 0) };
    let dls = ImageDataLoaders::from_folder(dir.path(), &cfg).unwrap();
    assert_eq!((dls.train.dataset().len(), dls.valid.dataset().len()), (9, 3));
    let batch = dls.train.iter_epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.x.shape(), [4, 8, 8, 3], "NHWC in [0, 1] until Normalize");
    assert_eq!(dls.vocab.names(), ["a", "b", "c"]);
}

#[test]
fn fastais_valid_folder_name_is_read_as_val() {
    let dir = TempDir::new("valid-name");
    make_folder(dir.path(), &["train", "valid"], &["a", "b"], 2);
    let f = ImageFolder::scan(dir.path(), &skip()).unwrap();
    assert_eq!((f.splits.train.len(), f.splits.valid.len()), (4, 4));
    assert!(f.left_out.is_empty(), "{:?}", f.left_out);
}

#[test]
fn images_below_a_class_folder_at_any_depth_are_that_class() {
    let dir = TempDir::new("nested");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a", "b"], 1);
    write_jpeg(&root.join("train/a/sub/deeper/2.jpg"), 8, 8);
    write_jpeg(&root.join("train/b/sub/3.jpg"), 8, 8);
    let f = ImageFolder::open(root).unwrap();
    assert_eq!(
        rel(root, &f.splits.train),
        ["train/a/0.jpg", "train/a/sub/deeper/2.jpg", "train/b/0.jpg", "train/b/sub/3.jpg"]
    );
    assert_eq!(f.train_labels.as_slice(), [0, 0, 1, 1]);
}

#[test]
fn stray_files_are_left_out_and_counted_by_reason() {
    let dir = TempDir::new("stray");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a", "b"], 2);
    write(&root.join("train/a/notes.txt"), b"hello");
    write(&root.join("labels.csv"), b"name,label\n");
    write_jpeg(&root.join("train/loose.jpg"), 8, 8);
    write_jpeg(&root.join("test/a/9.jpg"), 8, 8);
    let f = ImageFolder::open(root).unwrap();
    assert_eq!((f.splits.train.len(), f.splits.valid.len()), (4, 4));
    let counts = f.left_out.counts();
    assert_eq!(counts.get("not_an_image"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("outside_splits"), Some(&2), "{counts:?}");
    let outside: Vec<String> = f
        .left_out
        .entries
        .iter()
        .filter(|(_, r)| *r == LeftOutReason::OutsideSplits)
        .map(|(p, _)| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outside, ["test/a/9.jpg", "train/loose.jpg"]);
}

#[test]
fn a_dangling_link_fails_naming_it_as_a_link_or_is_skipped_and_counted() {
    let dir = TempDir::new("dangling");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a", "b"], 2);
    symlink(root.join("nowhere.jpg"), root.join("train/a/gone.jpg")).unwrap();
    let err = ImageFolder::open(root).unwrap_err();
    assert!(matches!(err, DataError::BadEntry { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("gone.jpg") && msg.contains("dangling") && !msg.contains("no such folder"), "{msg}");
    assert!(err.is_bad_file(), "--skip-bad-files covers it");

    let f = ImageFolder::scan(root, &skip()).unwrap();
    assert_eq!(f.splits.train.len(), 4);
    assert_eq!(f.left_out.counts().get("unreadable"), Some(&1));
}

#[test]
fn a_link_loop_fails_naming_its_ancestor_or_is_skipped_and_counted() {
    let dir = TempDir::new("loop");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a", "b"], 2);
    symlink(root.join("train"), root.join("train/a/back")).unwrap();
    let err = ImageFolder::open(root).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::BadEntry { .. }) && msg.contains("back") && msg.contains("ancestor"), "{msg}");

    let f = ImageFolder::scan(root, &skip()).unwrap();
    assert_eq!(f.splits.train.len(), 4, "the loop is not walked");
    assert_eq!(f.left_out.counts().get("link_loop"), Some(&1));
}

#[test]
fn linked_class_folders_and_files_are_followed() {
    let dir = TempDir::new("links");
    let store = TempDir::new("links-store");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a"], 2);
    write_jpeg(&store.path().join("b/0.jpg"), 8, 8);
    write_jpeg(&store.path().join("b/1.jpg"), 8, 8);
    symlink(store.path().join("b"), root.join("train/b")).unwrap();
    std::fs::create_dir_all(root.join("val/b")).unwrap();
    symlink(store.path().join("b/0.jpg"), root.join("val/b/linked.jpg")).unwrap();
    let (files, left_out) = walk_image_files(root, BadFilePolicy::Fail).unwrap();
    assert_eq!(files.len(), 7, "{files:?}");
    assert!(left_out.is_empty());
    let f = ImageFolder::open(root).unwrap();
    assert_eq!(f.vocab.names(), ["a", "b"]);
    assert_eq!(f.valid_labels.as_slice(), [0, 0, 1]);
}

#[test]
fn a_class_missing_from_one_split_is_an_error_unless_accepted_then_a_warning() {
    let dir = TempDir::new("missing-class");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["a", "b"], 2);
    write_jpeg(&root.join("train/c/0.jpg"), 8, 8);
    let err = ImageFolder::open(root).unwrap_err();
    assert!(matches!(err, DataError::ClassMissingFromSplit { .. }), "{err:?}");
    assert!(err.to_string().contains("\"c\""), "{err}");

    let cfg = FolderConfig { accept_missing_classes: true, ..skip() };
    let f = ImageFolder::scan(root, &cfg).unwrap();
    assert_eq!(f.vocab.names(), ["a", "b", "c"]);
    assert!(f.warnings.iter().any(|w| w.contains("\"c\"") && w.contains("none in val")), "{:?}", f.warnings);
}

#[test]
fn degenerate_data_is_warned_of() {
    let dir = TempDir::new("degenerate");
    let root = dir.path();
    make_folder(root, &["train", "val"], &["only"], 2);
    let f = ImageFolder::scan(root, &FolderConfig { bs: 64, ..FolderConfig::default() }).unwrap();
    assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
    assert!(f.warnings[0].contains("only one class"), "{:?}", f.warnings);
    assert!(f.warnings[1].contains("2 training images, fewer than one batch of 64"), "{:?}", f.warnings);

    make_folder(root, &["train", "val"], &["other"], 64);
    let f = ImageFolder::scan(root, &FolderConfig { bs: 64, ..FolderConfig::default() }).unwrap();
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
}

#[test]
fn layout_errors_say_what_would_do() {
    let dir = TempDir::new("layout");
    let root = dir.path();
    make_folder(root, &["."], &["a", "b"], 2);
    let err = ImageFolder::open(root).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }), "{err:?}");
    assert!(err.to_string().contains("valid_pct"), "{err}");

    make_folder(root, &["train", "val"], &["a", "b"], 2);
    let err = ImageFolder::scan(root, &unsplit(0.2, 0)).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }) && err.to_string().contains("already split"), "{err}");

    for pct in [0.0, 1.0, 1.5, f32::NAN] {
        let err = ImageFolder::scan(root, &unsplit(pct, 0)).unwrap_err();
        assert!(matches!(err, DataError::InvalidOption { option: "valid_pct", .. }), "{pct}: {err:?}");
    }
}

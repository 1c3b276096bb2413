//! Tests of finding files, labels, the vocabulary and train/valid splits, with their errors.

mod common;

use common::{TempDir, make_folder, write, write_jpeg};
use tiny_data::{DataError, ImageFolder, Vocab, get_image_files, grandparent_split};

#[test]
fn get_image_files_is_sorted_case_insensitive_and_skips_other_files() {
    let dir = TempDir::new("files");
    let root = dir.path();
    write_jpeg(&root.join("train/b/2.JPEG"), 8, 8);
    write_jpeg(&root.join("train/a/1.jpg"), 8, 8);
    write_jpeg(&root.join("train/a/0.Jpeg"), 8, 8);
    write(&root.join("val/a/3.PNG"), b"not really a png, but named like one");
    write(&root.join("noisy_imagenette.csv"), b"path,label\n");
    write(&root.join("train/a/notes.txt"), b"hello");
    write(&root.join("train/a/jpg"), b"a file named jpg without extension");

    let files = get_image_files(root).unwrap();
    let rel: Vec<String> = files.iter().map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(rel, ["train/a/0.Jpeg", "train/a/1.jpg", "train/b/2.JPEG", "val/a/3.PNG"]);
    assert_eq!(get_image_files(root).unwrap(), files, "order is deterministic");
}

#[test]
fn missing_folder_is_a_clear_error() {
    let dir = TempDir::new("missing");
    let err = get_image_files(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, DataError::MissingFolder { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
    let err = ImageFolder::open(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, DataError::MissingFolder { .. }));
}

#[test]
fn labels_vocab_and_splits_follow_the_folders() {
    let dir = TempDir::new("splits");
    make_folder(dir.path(), &["train", "val"], &["n02", "n01", "n03"], 2);
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.vocab.names(), ["n01", "n02", "n03"]);
    assert_eq!(folder.vocab.index("n03"), Some(2));
    assert_eq!(folder.vocab.val2idx().len(), 3);
    assert_eq!(folder.splits.train.len(), 6);
    assert_eq!(folder.splits.valid.len(), 6);
    assert!(folder.splits.train.iter().all(|f| f.starts_with(dir.path().join("train"))));
    let labels: Vec<u32> = folder.splits.valid.iter().map(|f| folder.vocab.label_of(f).unwrap()).collect();
    assert_eq!(labels, [0, 0, 1, 1, 2, 2]);
}

#[test]
fn grandparent_split_drops_files_of_other_folders() {
    let files: Vec<_> =
        ["r/train/a/1.jpg", "r/test/a/2.jpg", "r/val/a/3.jpg"].iter().map(std::path::PathBuf::from).collect();
    let s = grandparent_split(&files, "train", "val");
    assert_eq!(s.train, [files[0].clone()]);
    assert_eq!(s.valid, [files[2].clone()]);
}

#[test]
fn valid_folder_named_valid_is_accepted() {
    let dir = TempDir::new("valid-name");
    make_folder(dir.path(), &["train", "valid"], &["a", "b"], 1);
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.splits.valid.len(), 2);
}

#[test]
fn empty_split_is_a_clear_error() {
    let dir = TempDir::new("empty-split");
    make_folder(dir.path(), &["train"], &["a", "b"], 1);
    let err = ImageFolder::open(dir.path()).unwrap_err();
    assert!(matches!(&err, DataError::EmptySplit { split, .. } if split == "val"), "{err:?}");
}

#[test]
fn folder_without_images_is_a_clear_error() {
    let dir = TempDir::new("no-images");
    write(&dir.path().join("train/a/readme.md"), b"x");
    assert!(matches!(ImageFolder::open(dir.path()), Err(DataError::NoImages { .. })));
}

#[test]
fn class_absent_from_one_split_is_a_clear_error() {
    let dir = TempDir::new("absent-class");
    make_folder(dir.path(), &["train", "val"], &["a", "b"], 1);
    make_folder(dir.path(), &["train"], &["c"], 1);
    let err = ImageFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::ClassMissingFromSplit { class, present_in, absent_from } => {
            assert_eq!((class.as_str(), present_in.as_str(), absent_from.as_str()), ("c", "train", "val"))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("\"c\""), "{err}");
}

#[test]
fn unknown_label_names_the_file() {
    let vocab = Vocab::new(["a", "b"]);
    let err = vocab.label_of(std::path::Path::new("d/train/zebra/1.jpg")).unwrap_err();
    assert!(matches!(err, DataError::UnknownLabel { .. }));
    assert!(err.to_string().contains("zebra/1.jpg"), "{err}");
}

#[test]
fn a_class_folder_name_that_is_not_utf8_is_named_as_such() {
    // Issue 19: a non-UTF-8 class folder was reported as "it has no parent folder name".
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("nonutf8");
    let class = std::ffi::OsStr::from_bytes(b"caf\xe9");
    write_jpeg(&dir.path().join("train").join(class).join("1.jpg"), 8, 8);
    write_jpeg(&dir.path().join("val").join(class).join("2.jpg"), 8, 8);
    let err = ImageFolder::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NonUtf8Label { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not valid UTF-8") && msg.contains("caf\u{fffd}") && msg.contains("1.jpg"), "{msg}");
}

//! `ImageFolder`: a data set on disk, split by its folders or at random, each image labelled by its class folder.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use crate::{DataError, FolderConfig, LeftOut, LeftOutReason, Result, Rng, Splits, Targets, Vocab, walk_image_files};

/// Stream tag that keeps the random split apart from shuffling and augmentation.
const SPLIT_TAG: u64 = 0x5350_4C49_5400;

/// An image-folder data set on disk: its classes, its two splits with a label per file, what was left out, and
/// warnings about degenerate data, as fastai's `ImageDataLoaders.from_folder` reads one.
///
/// Two layouts: `<root>/train/<class>/**` beside `<root>/val/<class>/**` (or fastai's `valid`), the split given
/// by the folders (fastai's `GrandparentSplitter`); or, with `valid_pct`, `<root>/<class>/**` split at random
/// (fastai's `RandomSplitter(valid_pct, seed)`). Either way a file's class is the first folder below the split
/// (or the root), however deep the file lies under it.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The data set root.
    pub root: PathBuf,
    /// The classes, sorted by name: every class of either split.
    pub vocab: Vocab,
    /// The training and validation files.
    pub splits: Splits,
    /// The target of each training file, in order: its class index, or (multi-label, from a CSV with a label
    /// delimiter) its multi-hot row.
    pub train_labels: Targets,
    /// The target of each validation file, in order.
    pub valid_labels: Targets,
    /// What the walk and the layout left out, and why.
    pub left_out: LeftOut,
    /// What looks degenerate but was accepted: one class, fewer training images than a batch, a class missing
    /// from a split (with `accept_missing_classes`, or in multi-label data). For the caller to show.
    pub warnings: Vec<String>,
}

impl ImageFolder {
    /// Reads the layout `<root>/train/<class>/**` and `<root>/val/<class>/**` (Imagenette's; `valid` when there is
    /// no `val`), failing on unreadable entries and on classes missing from a split.
    ///
    /// # Errors
    /// As [`ImageFolder::scan`].
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::scan(root, &FolderConfig::default())
    }

    /// Reads the folder as `cfg` says: split at random with `valid_pct` (seeded by `seed`), else by its `train`
    /// and `val`/`valid` folders; unreadable entries and link loops skipped and counted with
    /// `on_bad_file: Skip`; a class missing from one split accepted (with a warning) with `accept_missing_classes`.
    ///
    /// # Errors
    /// [`DataError::MissingFolder`]; [`DataError::BadEntry`] for an unreadable entry under `BadFilePolicy::Fail`;
    /// [`DataError::Layout`] when there are no split folders and no `valid_pct`, or split folders beside a
    /// `valid_pct`; [`DataError::InvalidOption`] for a `valid_pct` outside (0, 1); [`DataError::NoImages`],
    /// [`DataError::EmptySplit`], or [`DataError::ClassMissingFromSplit`].
    pub fn scan(root: impl AsRef<Path>, cfg: &FolderConfig) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let (files, mut left_out) = walk_image_files(&root, cfg.on_bad_file)?;
        if files.is_empty() {
            return Err(DataError::NoImages { path: root });
        }
        let has_train = root.join("train").is_dir();
        let valid_name = if root.join("val").is_dir() || !root.join("valid").is_dir() { "val" } else { "valid" };
        // Each file with its split (true for training) and its class, or left out.
        let mut kept: Vec<(PathBuf, bool, Vec<String>)> = Vec::with_capacity(files.len());
        let mut non_utf8: Option<DataError> = None;
        let mut classed = |file: PathBuf, depth: usize, train: Option<bool>| {
            let parts = relative_parts(&root, &file);
            // Ok(class), or Err(the lossy name) when the class folder's name is not UTF-8.
            let class = (parts.len() > depth + 1).then(|| {
                parts[depth].to_str().map(str::to_owned).ok_or_else(|| parts[depth].to_string_lossy().into_owned())
            });
            match (class, train) {
                (Some(Ok(class)), Some(train)) => kept.push((file, train, vec![class])),
                (Some(Err(folder)), Some(_)) => {
                    non_utf8.get_or_insert(DataError::NonUtf8Label { path: file, folder });
                }
                _ => left_out.entries.push((file, LeftOutReason::OutsideSplits)),
            }
        };
        if let Some(pct) = cfg.valid_pct {
            check_valid_pct(pct)?;
        }
        match cfg.valid_pct {
            Some(_) if has_train => {
                return Err(DataError::Layout {
                    root,
                    why: "it is already split into train/ and val/ folders; leave out valid_pct".into(),
                });
            }
            Some(pct) => {
                let valid = random_split(files.len(), pct, cfg.seed)?;
                for (file, is_valid) in files.into_iter().zip(valid) {
                    classed(file, 0, Some(!is_valid));
                }
            }
            None if !has_train => {
                return Err(DataError::Layout {
                    root,
                    why: "there is no train/ folder: give train/<class>/ and val/<class>/ folders, or valid_pct (the \
                          train example's --valid-pct 0.2) to split one folder of class folders at random"
                        .into(),
                });
            }
            None => {
                for file in files {
                    let split =
                        relative_parts(&root, &file).first().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
                    let train = match split.as_str() {
                        "train" => Some(true),
                        s if s == valid_name => Some(false),
                        _ => None,
                    };
                    classed(file, 1, train);
                }
            }
        }
        if let Some(err) = non_utf8 {
            return Err(err);
        }
        let (train_name, valid_name) = if cfg.valid_pct.is_some() { ("train", "valid") } else { ("train", valid_name) };
        Self::labelled(root, kept, left_out, cfg, [train_name, valid_name], false)
    }

    /// Builds the vocabulary and the labelled splits of `kept` files (each with whether it trains, and its
    /// classes: one, or any number when `multi_label`), checking that both splits hold images and the same
    /// classes, and noting what looks degenerate.
    pub(crate) fn labelled(
        root: PathBuf,
        kept: Vec<(PathBuf, bool, Vec<String>)>,
        left_out: LeftOut,
        cfg: &FolderConfig,
        names: [&str; 2],
        multi_label: bool,
    ) -> Result<Self> {
        let classes = |train: bool| {
            kept.iter().filter(|k| k.1 == train).flat_map(|k| k.2.iter().cloned()).collect::<BTreeSet<_>>()
        };
        let (train_classes, valid_classes) = (classes(true), classes(false));
        let count = |train: bool| kept.iter().filter(|k| k.1 == train).count();
        for (split, n) in [(names[0], count(true)), (names[1], count(false))] {
            if n == 0 {
                return Err(DataError::EmptySplit { split: split.to_string(), root });
            }
        }
        let mut warnings = Vec::new();
        for (present, absent, present_in, absent_from) in
            [(&train_classes, &valid_classes, names[0], names[1]), (&valid_classes, &train_classes, names[1], names[0])]
        {
            if let Some(class) = present.difference(absent).next() {
                // fastai accepts a rare tag of multi-label data that one split lacks; a single-label class is refused.
                if !cfg.accept_missing_classes && !multi_label {
                    return Err(DataError::ClassMissingFromSplit {
                        class: class.clone(),
                        present_in: present_in.to_string(),
                        absent_from: absent_from.to_string(),
                    });
                }
                warnings.push(format!("class {class:?} has images in {present_in} but none in {absent_from}"));
            }
        }
        let vocab = Vocab::new(train_classes.union(&valid_classes).cloned());
        if vocab.is_empty() {
            return Err(DataError::InvalidOption {
                option: "labels",
                value: "no image has a label".into(),
                expected: "at least one class",
            });
        }
        if vocab.len() == 1 && !multi_label {
            warnings.push(format!(
                "only one class, {:?}: a model learns to answer it always, with a loss of 0",
                vocab.names()[0]
            ));
        }
        let mut splits = Splits { train: Vec::new(), valid: Vec::new() };
        let (mut train_sets, mut valid_sets) = (Vec::new(), Vec::new());
        for (file, train, classes) in kept {
            let set: Vec<u32> = classes.iter().map(|c| vocab.index(c).unwrap_or_default()).collect();
            if train {
                splits.train.push(file);
                train_sets.push(set);
            } else {
                splits.valid.push(file);
                valid_sets.push(set);
            }
        }
        let targets = |sets: Vec<Vec<u32>>| {
            if multi_label {
                Targets::from_label_sets(&sets, vocab.len())
            } else {
                Ok(Targets::classes(sets.into_iter().map(|s| s[0]).collect()))
            }
        };
        let (train_labels, valid_labels) = (targets(train_sets)?, targets(valid_sets)?);
        if splits.train.len() < cfg.bs {
            warnings.push(format!(
                "{} training images, fewer than one batch of {}: every step sees them all",
                splits.train.len(),
                cfg.bs
            ));
        }
        Ok(ImageFolder { root, vocab, splits, train_labels, valid_labels, left_out, warnings })
    }
}

/// Which of `n` items go to validation: a fraction `pct` of them, chosen at random from `seed` (fastai's
/// `RandomSplitter(valid_pct, seed)`).
///
/// # Errors
/// [`DataError::InvalidOption`] for a `pct` outside (0, 1).
pub(crate) fn random_split(n: usize, pct: f32, seed: u64) -> Result<Vec<bool>> {
    check_valid_pct(pct)?;
    let mut order: Vec<usize> = (0..n).collect();
    Rng::from_parts(&[seed, SPLIT_TAG]).shuffle(&mut order);
    let mut valid = vec![false; n];
    for &i in &order[..(pct as f64 * n as f64) as usize] {
        valid[i] = true;
    }
    Ok(valid)
}

/// Refuses a `valid_pct` outside (0, 1) with [`DataError::InvalidOption`].
fn check_valid_pct(pct: f32) -> Result<()> {
    if pct > 0.0 && pct < 1.0 {
        return Ok(());
    }
    Err(DataError::InvalidOption {
        option: "valid_pct",
        value: pct.to_string(),
        expected: "a fraction strictly between 0 and 1",
    })
}

/// The names of the folders (and the file) of `file` below `root`.
fn relative_parts<'a>(root: &Path, file: &'a Path) -> Vec<&'a OsStr> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect()
}

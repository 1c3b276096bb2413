//! The folder walk: every image file under a root, links followed with loop detection, and what was left out, and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{BadFilePolicy, DataError, Result, has_image_extension};

/// Why a walk or a layout left a file out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeftOutReason {
    /// Its extension is not one of [`crate::IMAGE_EXTENSIONS`] (a CSV, a README, a `.gif`).
    NotAnImage,
    /// It could not be read: a dangling link, a permission error (only under [`BadFilePolicy::Skip`]).
    Unreadable,
    /// A link that leads back to one of its own ancestors (only under [`BadFilePolicy::Skip`]).
    LinkLoop,
    /// It lies outside the split folders, or directly in one with no class folder between.
    OutsideSplits,
}

impl LeftOutReason {
    /// The reason as a key of the train example's JSON line, such as `not_an_image`.
    pub fn name(self) -> &'static str {
        match self {
            LeftOutReason::NotAnImage => "not_an_image",
            LeftOutReason::Unreadable => "unreadable",
            LeftOutReason::LinkLoop => "link_loop",
            LeftOutReason::OutsideSplits => "outside_splits",
        }
    }
}

/// The entries a walk or a layout left out, each with its reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeftOut {
    /// Every entry left out, in walk order.
    pub entries: Vec<(PathBuf, LeftOutReason)>,
}

impl LeftOut {
    /// How many entries were left out for each reason, by [`LeftOutReason::name`].
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (_, reason) in &self.entries {
            *counts.entry(reason.name()).or_insert(0) += 1;
        }
        counts
    }

    /// The number of entries left out.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Every image file under `root`, recursively and in sorted path order, with what was left out: fastai's
/// `get_image_files` that keeps its word.
///
/// Links are followed; a link that loops back to an ancestor, a dangling link or an unreadable folder is an error
/// naming the entry under [`BadFilePolicy::Fail`], and is left out and counted under [`BadFilePolicy::Skip`].
/// Files whose extension is not an image's are always left out, and counted.
///
/// # Errors
/// [`DataError::MissingFolder`] when `root` is not a folder; [`DataError::BadEntry`] for an unreadable entry or a
/// link loop under [`BadFilePolicy::Fail`].
pub fn walk_image_files(root: impl AsRef<Path>, policy: BadFilePolicy) -> Result<(Vec<PathBuf>, LeftOut)> {
    let root = root.as_ref();
    if !root.is_dir() {
        return Err(DataError::MissingFolder { path: root.to_path_buf() });
    }
    let (mut files, mut left_out) = (Vec::new(), LeftOut::default());
    for entry in walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name() {
        match entry {
            Ok(entry) if entry.file_type().is_dir() => {}
            Ok(entry) if has_image_extension(entry.path()) => files.push(entry.into_path()),
            Ok(entry) => left_out.entries.push((entry.into_path(), LeftOutReason::NotAnImage)),
            Err(err) => {
                let path = err.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                let (reason, why) = match err.loop_ancestor() {
                    Some(ancestor) => {
                        (LeftOutReason::LinkLoop, format!("a link back to its ancestor {}", ancestor.display()))
                    }
                    None => (LeftOutReason::Unreadable, entry_error(&path, &err)),
                };
                if policy == BadFilePolicy::Fail {
                    return Err(DataError::BadEntry { path, why });
                }
                left_out.entries.push((path, reason));
            }
        }
    }
    files.sort();
    Ok((files, left_out))
}

/// What went wrong with an entry, said of what it is: a dangling link is not called a folder.
fn entry_error(path: &Path, err: &walkdir::Error) -> String {
    let dangling = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) && !path.exists();
    match err.io_error() {
        _ if dangling => "a link to nothing (dangling)".to_owned(),
        Some(io) => io.to_string(),
        None => err.to_string(),
    }
}

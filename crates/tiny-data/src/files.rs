//! Finding image files, labelling them by parent folder (the chapter's `Vocab`) and splitting them by grandparent folder.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::{DataError, Result};

/// File extensions treated as images, compared case-insensitively (Imagenette's are `.JPEG`): the formats of the
/// reference's PIL that tiny decodes to the same pixels (JPEG, PNG, BMP, WebP; `tests/pil_input.rs`).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// Tells whether `path` has one of [`IMAGE_EXTENSIONS`], ignoring case.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Returns every image file under `path`, recursively, in sorted path order.
///
/// This is the chapter's `get_image_files`: files are kept by extension, case-insensitively,
/// so a CSV or README beside the images is skipped. The order is deterministic. See [`crate::walk_image_files`]
/// for the walk that also says what it left out, and can skip unreadable entries.
///
/// # Errors
/// [`DataError::MissingFolder`] when `path` is not a folder, [`DataError::BadEntry`] when part of
/// the tree cannot be read or a link loops.
pub fn get_image_files(path: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    Ok(crate::walk_image_files(path, crate::BadFilePolicy::Fail)?.0)
}

/// Returns the name of the folder holding `path`, the chapter's label.
///
/// # Errors
/// [`DataError::NoLabel`] when `path` has no parent folder, [`DataError::NonUtf8Label`] when that folder's name is
/// not valid UTF-8.
pub fn parent_label(path: &Path) -> Result<&str> {
    let folder =
        path.parent().and_then(Path::file_name).ok_or_else(|| DataError::NoLabel { path: path.to_path_buf() })?;
    folder.to_str().ok_or_else(|| DataError::NonUtf8Label {
        path: path.to_path_buf(),
        folder: folder.to_string_lossy().into_owned(),
    })
}

/// Returns the name of the folder two levels above `path`, which names its split.
fn grandparent_name(path: &Path) -> Option<&str> {
    path.parent()?.parent()?.file_name()?.to_str()
}

/// The sorted class names and their reverse map, the chapter's `vocab` and `val2idx`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vocab {
    names: Vec<String>,
    val2idx: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary from class names, sorted and de-duplicated.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let set: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        let names: Vec<String> = set.into_iter().collect();
        let val2idx = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        Vocab { names, val2idx }
    }

    /// Builds the vocabulary of the parent folder names of `files`.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// let files = [PathBuf::from("d/train/dog/1.jpg"), PathBuf::from("d/val/cat/2.jpg")];
    /// let vocab = tiny_data::Vocab::from_parent_names(&files).unwrap();
    /// assert_eq!(vocab.names(), ["cat", "dog"]);
    /// assert_eq!(vocab.index("dog"), Some(1));
    /// ```
    pub fn from_parent_names(files: &[PathBuf]) -> Result<Self> {
        let names = files.iter().map(|f| parent_label(f)).collect::<Result<Vec<_>>>()?;
        Ok(Vocab::new(names))
    }

    /// Returns the class names in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns the number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Tells whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Returns the index of class `name`, the chapter's `val2idx[name]`.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.val2idx.get(name).copied()
    }

    /// Returns the reverse map from class name to index.
    pub fn val2idx(&self) -> &HashMap<String, u32> {
        &self.val2idx
    }

    /// Returns the index of the parent folder of `path`.
    ///
    /// # Errors
    /// [`DataError::UnknownLabel`] when the folder name is not a class of this vocabulary.
    pub fn label_of(&self, path: &Path) -> Result<u32> {
        let name = parent_label(path)?;
        self.index(name).ok_or_else(|| DataError::UnknownLabel { label: name.to_string(), path: path.to_path_buf() })
    }
}

/// Files split into training and validation sets by their grandparent folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Files under `<root>/<train name>/<class>/`.
    pub train: Vec<PathBuf>,
    /// Files under `<root>/<valid name>/<class>/`.
    pub valid: Vec<PathBuf>,
}

/// Splits `files` by grandparent folder name, keeping their order; other files are dropped.
pub fn grandparent_split(files: &[PathBuf], train_name: &str, valid_name: &str) -> Splits {
    let pick = |name: &str| files.iter().filter(|f| grandparent_name(f) == Some(name)).cloned().collect::<Vec<_>>();
    Splits { train: pick(train_name), valid: pick(valid_name) }
}

//! `Targets`: what a batch is labelled with, one class index per item or, for multi-label data, a multi-hot row per item.

use crate::{DataError, Result};

/// The targets of a batch or a data set: one class index per item (single-label, fastai's `Categorize`), or one
/// row of `classes` flags per item, 1 for every class the item has (multi-label, fastai's `MultiCategorize` with
/// `OneHotEncode`).
///
/// Losses and metrics take the values as a flat `&[u32]` ([`Targets::as_slice`]): `n` class indices, or `n *
/// classes` flags, row-major. Which one a loss expects is its own contract (`cross_entropy` indices,
/// `bce_with_logits_flat` flags); `Targets` keeps which one the data holds.
///
/// ```
/// use tiny_data::Targets;
/// let single = Targets::classes(vec![2, 0]);
/// assert_eq!((single.len(), single.width(), single.as_slice()), (2, 1, &[2, 0][..]));
/// let multi = Targets::from_label_sets(&[vec![0, 2], vec![], vec![1]], 3).unwrap();
/// assert_eq!(multi.as_slice(), &[1, 0, 1, 0, 0, 0, 0, 1, 0]);
/// assert_eq!((multi.len(), multi.width(), multi.label_set(0)), (3, 3, vec![0, 2]));
/// assert_eq!(multi.select(&[2, 0]).as_slice(), &[0, 1, 0, 1, 0, 1]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    values: Vec<u32>,
    /// `Some(classes)` for multi-hot rows of that width; `None` for class indices.
    multi_hot: Option<usize>,
}

impl Targets {
    /// One class index per item.
    pub fn classes(indices: Vec<u32>) -> Self {
        Targets { values: indices, multi_hot: None }
    }

    /// Multi-hot rows: `classes` flags per item, row-major, each 0 or 1.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] when `classes` is 0, the flags do not fill whole rows, or a flag is not 0 or 1.
    pub fn multi_hot(flags: Vec<u32>, classes: usize) -> Result<Self> {
        let bad = |value: String, expected| DataError::InvalidOption { option: "multi-hot targets", value, expected };
        if classes == 0 || !flags.len().is_multiple_of(classes) {
            return Err(bad(
                format!("{} flags for {classes} classes", flags.len()),
                "whole rows of one flag per class",
            ));
        }
        if let Some(at) = flags.iter().position(|&f| f > 1) {
            return Err(bad(format!("flag {} of item {} is {}", at % classes, at / classes, flags[at]), "0 or 1"));
        }
        Ok(Targets { values: flags, multi_hot: Some(classes) })
    }

    /// Multi-hot rows from each item's set of class indices (fastai's `OneHotEncode`); an empty set is an item
    /// of none of the classes.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] for a class index not below `classes`, or no classes.
    pub fn from_label_sets(sets: &[Vec<u32>], classes: usize) -> Result<Self> {
        let mut flags = vec![0; sets.len() * classes];
        for (i, set) in sets.iter().enumerate() {
            for &c in set {
                if c as usize >= classes {
                    return Err(DataError::InvalidOption {
                        option: "multi-label targets",
                        value: format!("class {c} of item {i}"),
                        expected: "class indices below the number of classes",
                    });
                }
                flags[i * classes + c as usize] = 1;
            }
        }
        Self::multi_hot(flags, classes)
    }

    /// Empty targets of the same kind (and width) as `self`.
    pub fn empty_like(&self) -> Self {
        Targets { values: Vec::new(), multi_hot: self.multi_hot }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.values.len() / self.width()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether these are multi-hot rows (multi-label) rather than class indices.
    pub fn is_multi_label(&self) -> bool {
        self.multi_hot.is_some()
    }

    /// The values per item: 1 for class indices, the number of classes for multi-hot rows.
    pub fn width(&self) -> usize {
        self.multi_hot.unwrap_or(1)
    }

    /// The values, as losses and metrics take them: class indices, or flags row by row.
    pub fn as_slice(&self) -> &[u32] {
        &self.values
    }

    /// Item `i`'s values: its class index alone, or its row of flags.
    ///
    /// # Panics
    /// When `i` is not below [`Targets::len`].
    pub fn item(&self, i: usize) -> &[u32] {
        let w = self.width();
        &self.values[i * w..(i + 1) * w]
    }

    /// Item `i`'s classes, in increasing order: its one class, or every class whose flag is set.
    ///
    /// # Panics
    /// When `i` is not below [`Targets::len`].
    pub fn label_set(&self, i: usize) -> Vec<u32> {
        match self.multi_hot {
            None => vec![self.values[i]],
            Some(_) => self.item(i).iter().enumerate().filter(|(_, f)| **f == 1).map(|(c, _)| c as u32).collect(),
        }
    }

    /// The items at `order`, in that order (a shuffled or filtered copy).
    ///
    /// # Panics
    /// When an index is not below [`Targets::len`].
    pub fn select(&self, order: &[u32]) -> Targets {
        let mut values = Vec::with_capacity(order.len() * self.width());
        for &i in order {
            values.extend_from_slice(self.item(i as usize));
        }
        Targets { values, multi_hot: self.multi_hot }
    }

    /// Appends `other`'s items.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] when the two are not of one kind and width (class indices beside multi-hot
    /// rows, or rows of two widths), unless `self` is empty, which takes `other`'s kind.
    pub fn extend(&mut self, other: &Targets) -> Result<()> {
        if self.values.is_empty() {
            self.multi_hot = other.multi_hot;
        } else if self.multi_hot != other.multi_hot {
            return Err(DataError::InvalidOption {
                option: "targets",
                value: format!("{} beside {}", other.kind(), self.kind()),
                expected: "targets of one kind: class indices, or multi-hot rows of one width",
            });
        }
        self.values.extend_from_slice(&other.values);
        Ok(())
    }

    /// The kind, in words, for error messages.
    fn kind(&self) -> String {
        match self.multi_hot {
            None => "class indices".into(),
            Some(c) => format!("multi-hot rows of {c} classes"),
        }
    }
}

impl From<Vec<u32>> for Targets {
    /// Class indices, one per item.
    fn from(indices: Vec<u32>) -> Self {
        Targets::classes(indices)
    }
}

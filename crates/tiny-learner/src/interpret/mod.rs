//! fastai's `ClassificationInterpretation`: the confusion matrix, the most confused pairs and the top losses of a
//! classifier's validation set, as numbers, a text table and PNG pictures (in `show.rs`, with `show_batch`); the
//! multi-label counterpart in `multi.rs`.

mod multi;
#[cfg(feature = "plot")]
mod show;

#[cfg(feature = "plot")]
use std::path::Path;
use std::path::PathBuf;

use tiny_data::ItemTransform;

use crate::{Learner, LearnerError, Preds, Result};

pub use multi::MultiLabelInterpretation;
#[cfg(feature = "plot")]
pub use show::{show_batch, show_batch_denormalized};

/// The side of the thumbnails of [`ClassificationInterpretation::plot_top_losses`] when the items are smaller.
pub(crate) const THUMB: u32 = 160;

/// One of the items with the largest losses, as [`ClassificationInterpretation::top_losses`] returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLoss {
    /// The item's index in the validation set.
    pub index: usize,
    /// Its image file.
    pub file: PathBuf,
    /// The class it belongs to (a multi-label item's classes, joined by `;`).
    pub actual: String,
    /// The class the model predicted (a multi-label item's predicted classes, joined by `;`).
    pub predicted: String,
    /// Its loss: the cross entropy, or the binary cross entropy averaged over the classes.
    pub loss: f32,
    /// The probability the model gave its prediction (for a multi-label item, its most probable class's).
    pub probability: f32,
}

/// What a classifier got right and wrong over a set of items: fastai's `ClassificationInterpretation`.
///
/// ```
/// use tiny_learner::{ClassificationInterpretation, Preds};
/// use tiny_tensor::Tensor;
/// let probs = Tensor::from_vec(vec![0.9, 0.1, 0.3, 0.7, 0.6, 0.4], &[3, 2]).unwrap();
/// let preds = Preds { probs, targets: vec![0, 1, 1].into(), losses: None };
/// let names = vec!["cat".to_string(), "dog".to_string()];
/// let interp = ClassificationInterpretation::new(preds, names, vec!["a.jpg".into(); 3]).unwrap();
/// assert_eq!(interp.confusion_matrix(), vec![vec![1, 0], vec![1, 1]]);
/// assert_eq!(interp.most_confused(1), vec![("dog".to_string(), "cat".to_string(), 1)]);
/// assert_eq!(interp.top_losses(1)[0].index, 2);
/// ```
#[derive(Debug, Clone)]
pub struct ClassificationInterpretation {
    vocab: Vec<String>,
    files: Vec<PathBuf>,
    probs: Vec<f32>,
    targets: Vec<u32>,
    decoded: Vec<u32>,
    losses: Vec<f32>,
    item_tfm: ItemTransform,
}

impl ClassificationInterpretation {
    /// fastai's `ClassificationInterpretation.from_learner(learn)`: the predictions and losses of one pass over the
    /// learner's validation set (see [`Learner::get_preds`]), with its files. The class names are those of the
    /// learner's [`crate::ExportInfo`], else its loaders' vocabulary, else the class indices.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the validation loader is not an image folder's (there are no files to
    /// show); the inference pass's own errors.
    pub fn from_learner(learn: &mut Learner) -> Result<Self> {
        // The predictions first: the files their pass skips are then known, and left out of `ds` too.
        let preds = learn.get_preds(true)?;
        let (ds, _) = crate::inference::valid_files(learn, "ClassificationInterpretation::from_learner")?;
        let vocab = class_names(learn, preds.n_classes());
        Ok(Self::new(preds, vocab, ds.files().to_vec())?.with_item_tfm(ds.transform().deterministic()))
    }

    /// An interpretation of `preds` over the image `files` (one per item, in order) with class names `vocab`;
    /// losses missing from `preds` are computed as the cross entropy `-ln p(target)`.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the counts disagree (files, losses, items; names, classes) or a target
    /// is not a class.
    pub fn new(preds: Preds, vocab: Vec<String>, files: Vec<PathBuf>) -> Result<Self> {
        let bad = |msg: String| LearnerError::InvalidArgument { what: "ClassificationInterpretation::new", msg };
        if preds.is_multi_label() {
            return Err(bad("multi-label predictions: interpret them with MultiLabelInterpretation".into()));
        }
        let (n, c) = (preds.len(), preds.n_classes());
        let targets = preds.targets.as_slice().to_vec();
        let probs = preds.probs.try_to_vec()?;
        if probs.len() != n * c || (n > 0 && preds.probs.rank() != 2) {
            return Err(bad(format!("probabilities of shape {:?} for {n} items", preds.probs.shape())));
        }
        if vocab.len() != c {
            return Err(bad(format!("{} class names for {c} classes", vocab.len())));
        }
        if files.len() != n {
            return Err(bad(format!("{} files for {n} items", files.len())));
        }
        if let Some(t) = targets.iter().find(|&&t| t as usize >= c) {
            return Err(bad(format!("target {t} is not one of the {c} classes")));
        }
        let losses = match preds.losses {
            Some(l) if l.len() != n => return Err(bad(format!("{} losses for {n} items", l.len()))),
            Some(l) => l,
            None => (0..n).map(|i| -probs[i * c + targets[i] as usize].ln()).collect(),
        };
        let decoded = (0..n).map(|i| argmax(&probs[i * c..(i + 1) * c])).collect();
        Ok(ClassificationInterpretation {
            vocab,
            files,
            probs,
            targets,
            decoded,
            losses,
            item_tfm: ItemTransform::squash(THUMB),
        })
    }

    /// Shows the images with `tfm`'s method (squash or centre crop) in `plot_top_losses` (feature `plot`), as the
    /// model saw them; its size is raised to 160 pixels when smaller.
    pub fn with_item_tfm(mut self, tfm: ItemTransform) -> Self {
        self.item_tfm = tfm.deterministic();
        self
    }

    /// The class names.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The predicted class of each item (fastai's `decoded`).
    pub fn decoded(&self) -> &[u32] {
        &self.decoded
    }

    /// Each item's loss.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    /// fastai's `confusion_matrix()`: `m[actual][predicted]` counts the items of class `actual` predicted as
    /// `predicted`, so the diagonal holds the right answers.
    pub fn confusion_matrix(&self) -> Vec<Vec<u64>> {
        let c = self.vocab.len();
        let mut m = vec![vec![0u64; c]; c];
        for (&t, &p) in self.targets.iter().zip(&self.decoded) {
            m[t as usize][p as usize] += 1;
        }
        m
    }

    /// The confusion matrix as an aligned text table: one row per actual class, one column per predicted class.
    pub fn confusion_table(&self) -> String {
        let m = self.confusion_matrix();
        let corner = "actual \\ predicted";
        let label_w = self.vocab.iter().map(|s| s.chars().count()).chain([corner.len()]).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.vocab.len())
            .map(|j| {
                let digits = m.iter().map(|r| r[j].to_string().len()).max().unwrap_or(1);
                self.vocab[j].chars().count().max(digits)
            })
            .collect();
        let mut out = format!("{corner:<label_w$}");
        for (name, w) in self.vocab.iter().zip(&widths) {
            out += &format!("  {name:>w$}");
        }
        out.push('\n');
        for (name, row) in self.vocab.iter().zip(&m) {
            out += &format!("{name:<label_w$}");
            for (v, w) in row.iter().zip(&widths) {
                out += &format!("  {v:>w$}");
            }
            out.push('\n');
        }
        out
    }

    /// fastai's `most_confused(min_val)`: the `(actual, predicted, count)` pairs of different classes confused at
    /// least `min_count` times, most often first (pairs as often confused stay in row order); as fastai, a
    /// `min_count` of 0 lists every pair.
    pub fn most_confused(&self, min_count: u64) -> Vec<(String, String, u64)> {
        let m = self.confusion_matrix();
        let mut pairs: Vec<(String, String, u64)> = Vec::new();
        for (i, row) in m.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if i != j && v >= min_count {
                    pairs.push((self.vocab[i].clone(), self.vocab[j].clone(), v));
                }
            }
        }
        pairs.sort_by_key(|p| std::cmp::Reverse(p.2));
        pairs
    }

    /// fastai's `top_losses(k)`: the `k` items (all of them when there are fewer) with the largest losses, largest
    /// first; items of equal loss keep their order.
    pub fn top_losses(&self, k: usize) -> Vec<TopLoss> {
        let c = self.vocab.len();
        by_loss(&self.losses)
            .into_iter()
            .take(k)
            .map(|i| {
                let p = self.decoded[i] as usize;
                TopLoss {
                    index: i,
                    file: self.files[i].clone(),
                    actual: self.vocab[self.targets[i] as usize].clone(),
                    predicted: self.vocab[p].clone(),
                    loss: self.losses[i],
                    probability: self.probs[i * c + p],
                }
            })
            .collect()
    }

    /// fastai's `plot_confusion_matrix()`: a PNG heat map of [`Self::confusion_matrix`] titled "Confusion matrix",
    /// predicted classes along the bottom, actual classes down the side, each cell's count written in it.
    #[cfg(feature = "plot")]
    pub fn plot_confusion_matrix(&self, path: &Path) -> Result<()> {
        crate::plot::MatrixPlot::new(
            "Confusion matrix",
            "Predicted",
            "Actual",
            self.vocab.clone(),
            self.confusion_matrix(),
        )?
        .save_png(path)
    }

    /// fastai's `plot_top_losses(k)`: a PNG grid of the [`Self::top_losses`] images, each decoded from its file and
    /// resized as the model saw it (to at least 160 pixels), under `prediction/actual / loss / probability`.
    ///
    /// # Errors
    /// An error naming the file when an image cannot be read; the PNG's own errors.
    #[cfg(feature = "plot")]
    pub fn plot_top_losses(&self, k: usize, path: &Path) -> Result<()> {
        show::plot_top_losses(&self.top_losses(k), self.item_tfm, path)
    }
}

/// The class names of a learner's predictions of `n` classes: its [`crate::ExportInfo`]'s, else its loaders'
/// vocabulary, else the class indices.
pub(crate) fn class_names(learn: &Learner, n: usize) -> Vec<String> {
    let s = learn.state();
    match (&s.export_info, s.dls.vocab.names()) {
        (Some(info), _) => info.vocab.clone(),
        (None, names) if names.len() == n => names.to_vec(),
        (None, _) => (0..n).map(|c| c.to_string()).collect(),
    }
}

/// The items' indices by loss, largest first; items of equal loss keep their order.
pub(crate) fn by_loss(losses: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..losses.len()).collect();
    order.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
    order
}

/// The index of the largest value (the first of equals), as `argmax`.
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

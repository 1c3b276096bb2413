//! `MultiLabelInterpretation`: per-class confusion and the top losses of a multi-label classifier's validation set.

#[cfg(feature = "plot")]
use std::path::Path;
use std::path::PathBuf;

use tiny_data::{ItemTransform, Targets};

use super::{THUMB, TopLoss, by_loss, class_names};
use crate::inference::label_names;
use crate::{DEFAULT_THRESH, Learner, LearnerError, Preds, Result};

/// What a multi-label classifier got right and wrong: each class a yes-or-no question of its own, so one 2x2
/// confusion matrix per class (scikit-learn's `multilabel_confusion_matrix`) instead of one across classes, and
/// the items of largest binary cross entropy.
///
/// ```
/// use tiny_learner::{MultiLabelInterpretation, Preds, Targets};
/// use tiny_tensor::Tensor;
/// // Two items, classes [cat, dog]: the first is both (predicted cat only), the second neither (predicted dog).
/// let probs = Tensor::from_vec(vec![0.9, 0.2, 0.1, 0.7], &[2, 2]).unwrap();
/// let preds = Preds { probs, targets: Targets::multi_hot(vec![1, 1, 0, 0], 2).unwrap(), losses: None };
/// let names = vec!["cat".to_string(), "dog".to_string()];
/// let interp = MultiLabelInterpretation::new(preds, names, vec!["a.jpg".into(); 2], 0.5).unwrap();
/// // [[tn, fp], [fn, tp]] per class.
/// assert_eq!(interp.per_class_confusion(), vec![[[1, 0], [0, 1]], [[0, 1], [1, 0]]]);
/// let top = &interp.top_losses(1)[0];
/// assert_eq!((top.actual.as_str(), top.predicted.as_str()), ("cat;dog", "cat"));
/// ```
#[derive(Debug, Clone)]
pub struct MultiLabelInterpretation {
    vocab: Vec<String>,
    files: Vec<PathBuf>,
    probs: Vec<f32>,
    targets: Targets,
    decoded: Targets,
    losses: Vec<f32>,
    thresh: f32,
    item_tfm: ItemTransform,
}

impl MultiLabelInterpretation {
    /// The predictions and losses of one pass over a multi-label learner's validation set, with its files, at the
    /// threshold of its export information (0.5 without one).
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the validation loader is not an image folder's, or its targets are
    /// not multi-label; the inference pass's own errors.
    pub fn from_learner(learn: &mut Learner) -> Result<Self> {
        let preds = learn.get_preds(true)?;
        let (ds, _) = crate::inference::valid_files(learn, "MultiLabelInterpretation::from_learner")?;
        let thresh = learn.state().export_info.as_ref().map_or(DEFAULT_THRESH, |info| info.thresh);
        let vocab = class_names(learn, preds.n_classes());
        Ok(Self::new(preds, vocab, ds.files().to_vec(), thresh)?.with_item_tfm(ds.transform().deterministic()))
    }

    /// An interpretation of multi-label `preds` (probabilities, sigmoids) over the image `files` with class names
    /// `vocab`, predicting each class whose probability exceeds `thresh`; losses missing from `preds` are computed
    /// as each item's binary cross entropy averaged over the classes.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the targets are not multi-hot rows of the classes, or the counts
    /// disagree (files, losses, items; names, classes).
    pub fn new(preds: Preds, vocab: Vec<String>, files: Vec<PathBuf>, thresh: f32) -> Result<Self> {
        let bad = |msg: String| LearnerError::InvalidArgument { what: "MultiLabelInterpretation::new", msg };
        let (n, c) = (preds.len(), preds.n_classes());
        if !preds.is_multi_label() {
            return Err(bad("single-label predictions: interpret them with ClassificationInterpretation".into()));
        }
        if preds.targets.width() != c {
            return Err(bad(format!("targets of {} classes for predictions of {c}", preds.targets.width())));
        }
        let probs = preds.probs.try_to_vec()?;
        if probs.len() != n * c {
            return Err(bad(format!("probabilities of shape {:?} for {n} items", preds.probs.shape())));
        }
        if vocab.len() != c {
            return Err(bad(format!("{} class names for {c} classes", vocab.len())));
        }
        if files.len() != n {
            return Err(bad(format!("{} files for {n} items", files.len())));
        }
        let decoded = preds.decoded_multi(thresh)?;
        let losses = match preds.losses {
            Some(l) if l.len() != n => return Err(bad(format!("{} losses for {n} items", l.len()))),
            Some(l) => l,
            None => (0..n).map(|i| bce_of_probs(&probs[i * c..(i + 1) * c], preds.targets.item(i))).collect(),
        };
        Ok(MultiLabelInterpretation {
            vocab,
            files,
            probs,
            targets: preds.targets,
            decoded,
            losses,
            thresh,
            item_tfm: ItemTransform::squash(THUMB),
        })
    }

    /// Shows the images with `tfm`'s method in `plot_top_losses` (feature `plot`), as the model saw them.
    pub fn with_item_tfm(mut self, tfm: ItemTransform) -> Self {
        self.item_tfm = tfm.deterministic();
        self
    }

    /// The class names.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// The threshold above which a class is predicted.
    pub fn thresh(&self) -> f32 {
        self.thresh
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The predicted classes of each item, as multi-hot rows.
    pub fn decoded(&self) -> &Targets {
        &self.decoded
    }

    /// Each item's loss.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    /// scikit-learn's `multilabel_confusion_matrix`: for each class `[[tn, fp], [fn, tp]]`, rows the truth (no,
    /// yes) and columns the prediction (no, yes).
    pub fn per_class_confusion(&self) -> Vec<[[u64; 2]; 2]> {
        let c = self.vocab.len();
        let mut m = vec![[[0u64; 2]; 2]; c];
        for (i, (&t, &p)) in self.targets.as_slice().iter().zip(self.decoded.as_slice()).enumerate() {
            m[i % c][t as usize][p as usize] += 1;
        }
        m
    }

    /// The per-class confusion as an aligned text table: each class's true and false positives and negatives, its
    /// precision, recall and F1.
    pub fn confusion_table(&self) -> String {
        let w = self.vocab.iter().map(|s| s.chars().count()).chain(["class".len()]).max().unwrap_or(0);
        let mut out = format!(
            "{:<w$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}  {:>6}  {:>6}\n",
            "class", "tp", "fp", "fn", "tn", "precision", "recall", "f1"
        );
        for (name, [[tn, fp], [fneg, tp]]) in self.vocab.iter().zip(self.per_class_confusion()) {
            let r = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            let (p, rc, f1) = (r(tp, tp + fp), r(tp, tp + fneg), r(2 * tp, 2 * tp + fp + fneg));
            out += &format!("{name:<w$}  {tp:>6}  {fp:>6}  {fneg:>6}  {tn:>6}  {p:>9.3}  {rc:>6.3}  {f1:>6.3}\n");
        }
        out
    }

    /// fastai's `top_losses(k)` for multi-label items: the `k` items with the largest losses, largest first, each
    /// with its classes and the predicted ones joined by `;`, and its largest class probability.
    pub fn top_losses(&self, k: usize) -> Vec<TopLoss> {
        let c = self.vocab.len();
        by_loss(&self.losses)
            .into_iter()
            .take(k)
            .map(|i| TopLoss {
                index: i,
                file: self.files[i].clone(),
                actual: label_names(&self.targets.label_set(i), &self.vocab),
                predicted: label_names(&self.decoded.label_set(i), &self.vocab),
                loss: self.losses[i],
                probability: self.probs[i * c..(i + 1) * c].iter().copied().fold(0.0, f32::max),
            })
            .collect()
    }

    /// fastai's `plot_top_losses(k)`: a PNG grid of the [`Self::top_losses`] images, as the model saw them.
    ///
    /// # Errors
    /// An error naming the file when an image cannot be read; the PNG's own errors.
    #[cfg(feature = "plot")]
    pub fn plot_top_losses(&self, k: usize, path: &Path) -> Result<()> {
        super::show::plot_top_losses(&self.top_losses(k), self.item_tfm, path)
    }
}

/// The binary cross entropy of probabilities `p` against flags `t`, averaged over the classes, with each log
/// clamped at -100 as PyTorch's `binary_cross_entropy` does.
fn bce_of_probs(p: &[f32], t: &[u32]) -> f32 {
    let sum: f32 = p.iter().zip(t).map(|(&p, &t)| -(if t == 1 { p.ln() } else { (1.0 - p).ln() }).max(-100.0)).sum();
    sum / p.len().max(1) as f32
}

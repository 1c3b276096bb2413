//! Inference on a learner: fastai's `get_preds`, `predict` and `tta`, batched, without gradients, on its device.

use std::path::{Path, PathBuf};

use tiny_data::{BadFilePolicy, BatchSource, DataLoader, ImageFolderDataset, InMemory, ItemTransform, Targets};
use tiny_tensor::Tensor;

use crate::callbacks::GatherPreds;
use crate::{Learner, LearnerError, Result};

/// The batch size of the loaders that [`Learner::test_dl`] builds.
pub const TEST_BS: usize = 64;

/// fastai's default threshold of a multi-label prediction (`accuracy_multi`'s and `predict`'s 0.5).
pub const DEFAULT_THRESH: f32 = 0.5;

/// What [`Learner::get_preds`] returns: fastai's `(preds, targs, losses)`.
#[derive(Debug, Clone)]
pub struct Preds {
    /// The probabilities, `[items, classes]`, on the CPU: the softmax of the model's outputs, or for multi-label
    /// targets the sigmoid of each output (every class its own yes or no).
    pub probs: Tensor,
    /// The target of each item, as the loader gave it (class 0, or no class, for the unlabelled items of a
    /// `test_dl`).
    pub targets: Targets,
    /// Each item's loss, when asked for: its cross entropy, or its binary cross entropy averaged over the classes.
    pub losses: Option<Vec<f32>>,
}

impl Preds {
    /// The number of items.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The number of classes.
    pub fn n_classes(&self) -> usize {
        self.probs.shape().get(1).copied().unwrap_or(0)
    }

    /// Whether the targets are multi-label (multi-hot rows), so the probabilities are sigmoids.
    pub fn is_multi_label(&self) -> bool {
        self.targets.is_multi_label()
    }

    /// The predicted class of each item, the argmax of its probabilities (fastai's `decoded`; for multi-label
    /// predictions the most probable class, see [`Preds::decoded_multi`]).
    pub fn decoded(&self) -> Result<Vec<u32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.probs.argmax(-1)?)
    }

    /// The multi-label prediction of each item: every class whose probability exceeds `thresh`, as multi-hot rows
    /// (fastai's decoded `MultiCategory`, `probs > thresh`).
    pub fn decoded_multi(&self, thresh: f32) -> Result<Targets> {
        let flags = self.probs.try_to_vec()?.iter().map(|&p| u32::from(p > thresh)).collect();
        Ok(Targets::multi_hot(flags, self.n_classes().max(1))?)
    }

    /// The fraction of items whose predicted class is their target; for multi-label predictions
    /// [`Preds::accuracy_multi`] at [`DEFAULT_THRESH`].
    pub fn accuracy(&self) -> Result<f32> {
        if self.is_multi_label() {
            return self.accuracy_multi(DEFAULT_THRESH);
        }
        let hits = self.decoded()?.iter().zip(self.targets.as_slice()).filter(|(p, t)| p == t).count();
        Ok(hits as f32 / self.len().max(1) as f32)
    }

    /// fastai's `accuracy_multi` of multi-label predictions at `thresh`: the fraction of item-class pairs predicted
    /// right, yes or no.
    pub fn accuracy_multi(&self, thresh: f32) -> Result<f32> {
        let decoded = self.decoded_multi(thresh)?;
        let hits = decoded.as_slice().iter().zip(self.targets.as_slice()).filter(|(p, t)| p == t).count();
        Ok(hits as f32 / self.targets.as_slice().len().max(1) as f32)
    }

    /// The probabilities of item `i`.
    pub fn row(&self, i: usize) -> Result<Vec<f32>> {
        let c = self.n_classes();
        let all = self.probs.try_to_vec()?;
        all.get(i * c..(i + 1) * c).map(<[f32]>::to_vec).ok_or_else(|| LearnerError::InvalidArgument {
            what: "Preds::row",
            msg: format!("item {i} of {}", self.len()),
        })
    }
}

/// What [`Learner::predict`] returns: fastai's `(decoded, index, probs)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The predicted class's name; for a multi-label model, the predicted classes' names joined by `;` (empty
    /// when no class passes the threshold).
    pub class: String,
    /// The most probable class's index in the vocabulary.
    pub index: u32,
    /// The predicted classes' names: the one class, or every class whose probability exceeds the multi-label
    /// threshold (fastai's decoded `MultiCategory`), in vocabulary order.
    pub labels: Vec<String>,
    /// The probability of every class, in vocabulary order (sigmoids for a multi-label model).
    pub probs: Vec<f32>,
}

impl Prediction {
    /// The `k` most probable classes with their probabilities, most probable first.
    pub fn top(&self, k: usize, vocab: &[String]) -> Vec<(String, f32)> {
        let mut order: Vec<usize> = (0..self.probs.len()).collect();
        order.sort_by(|&a, &b| self.probs[b].total_cmp(&self.probs[a]).then(a.cmp(&b)));
        order.into_iter().take(k).map(|i| (vocab.get(i).cloned().unwrap_or_default(), self.probs[i])).collect()
    }
}

/// Test-time augmentation as fastai's `tta(n=4, beta=0.25)`: `n` passes with the training augmentation (random
/// resized crops and flips), averaged, then mixed with the plain pass as `lerp(augmented, plain, beta)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tta {
    /// The number of augmented passes.
    pub n: usize,
    /// The weight of the plain prediction: 0 keeps only the augmented average, 1 only the plain pass.
    pub beta: f32,
    /// The augmentation; `None` means the item transform's own with fastai's default random resized crop and flip.
    pub augment: Option<ItemTransform>,
}

impl Default for Tta {
    fn default() -> Self {
        Tta { n: 4, beta: 0.25, augment: None }
    }
}

impl Learner {
    /// fastai's `learn.get_preds()`: the probabilities, targets and (with `with_loss`) per-item losses of the
    /// validation set, in its order, from one pass in evaluation mode without gradients. The callbacks that prepare
    /// batches (normalising, moving to the device) run; those that log or keep results (see
    /// [`Callback::runs_in_inference`](crate::Callback::runs_in_inference)) do not, so the pass leaves no trace in the history.
    pub fn get_preds(&mut self, with_loss: bool) -> Result<Preds> {
        self.inference_pass(None, with_loss)
    }

    /// [`Learner::get_preds`] over another source of batches, such as a [`Learner::test_dl`].
    pub fn get_preds_on(&mut self, source: Box<dyn BatchSource>, with_loss: bool) -> Result<Preds> {
        self.inference_pass(Some(source), with_loss)
    }

    /// fastai's `dls.test_dl(items)`: a loader of image files, unlabelled (every target class 0, or for a multi-label
    /// learner an empty row), with the item transform the learner was trained with.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the learner does not know its item transform (see
    /// [`Learner::with_export_info`]).
    pub fn test_dl(&self, files: Vec<PathBuf>) -> Result<DataLoader<ImageFolderDataset>> {
        let info = self.export_info("test_dl")?;
        let classes = info.multi_label.then_some(info.vocab.len());
        test_loader(files, info.item_tfm, classes)
    }

    /// fastai's `learn.predict(item)`: the class of one image file, its index and every class's probability.
    ///
    /// # Errors
    /// An error naming the file when it is missing, unreadable or not an image; [`LearnerError::InvalidArgument`]
    /// when the learner does not know its classes and item transform.
    pub fn predict(&mut self, path: impl AsRef<Path>) -> Result<Prediction> {
        let path = path.as_ref().to_path_buf();
        self.predict_all(&[path]).map(|mut all| all.remove(0))
    }

    /// [`Learner::predict`] for several files at once, in batches. A multi-label model predicts every class whose
    /// probability exceeds its export's `thresh` (fastai's `predict` with `BCEWithLogitsLossFlat(thresh)`).
    pub fn predict_all(&mut self, paths: &[PathBuf]) -> Result<Vec<Prediction>> {
        let info = self.export_info("predict")?;
        let (vocab, thresh) = (info.vocab.clone(), info.thresh);
        let dl = self.test_dl(paths.to_vec())?;
        let preds = self.get_preds_on(Box::new(dl), false)?;
        let decoded = preds.decoded()?;
        let multi = preds.is_multi_label().then(|| preds.decoded_multi(thresh)).transpose()?;
        let c = preds.n_classes();
        let probs = preds.probs.try_to_vec()?;
        Ok(decoded
            .iter()
            .enumerate()
            .map(|(i, &index)| {
                let set = multi.as_ref().map_or_else(|| vec![index], |m| m.label_set(i));
                let labels: Vec<String> = set.iter().map(|&c| class_name(c, &vocab)).collect();
                Prediction { class: labels.join(";"), index, labels, probs: probs[i * c..(i + 1) * c].to_vec() }
            })
            .collect())
    }

    /// fastai's `learn.tta()` over the validation set: see [`Tta`]. Returns the mixed probabilities with the
    /// targets; each augmented pass draws its own crops and flips.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the validation loader holds no image files (an [`InMemory`] source:
    /// TTA decodes the files again with augmentation); the inference passes' own errors.
    pub fn tta(&mut self, tta: Tta) -> Result<Preds> {
        let (ds, policy) = valid_files(self, "tta")?;
        self.tta_with(&ds, tta, policy)
    }

    /// [`Learner::tta`] over the files and labels of `ds`, a test set with labels, say (fastai's `tta(dl=...)`).
    pub fn tta_on(&mut self, ds: &ImageFolderDataset, tta: Tta) -> Result<Preds> {
        self.tta_with(ds, tta, BadFilePolicy::Fail)
    }

    /// [`Learner::tta_on`] with `policy` for unreadable files (the validation loader's, for [`Learner::tta`]).
    fn tta_with(&mut self, ds: &ImageFolderDataset, tta: Tta, policy: BadFilePolicy) -> Result<Preds> {
        let plain_tfm = ds.transform().deterministic();
        let augment = tta.augment.unwrap_or_else(|| plain_tfm.with_augmentation());
        let loader = |tfm: ItemTransform, seed: u64| -> Result<DataLoader<ImageFolderDataset>> {
            let ds = ImageFolderDataset::from_targets(ds.files().to_vec(), ds.targets().clone(), tfm)?;
            Ok(DataLoader::new(ds, TEST_BS)?.seed(seed).on_bad_file(policy))
        };
        let plain = self.get_preds_on(Box::new(loader(plain_tfm, 0)?), false)?;
        let mut sum: Option<Tensor> = None;
        for pass in 0..tta.n {
            let p = self.get_preds_on(Box::new(loader(augment, 1 + pass as u64)?), false)?.probs;
            sum = Some(match sum {
                Some(s) => s.add(&p)?,
                None => p,
            });
        }
        let Some(sum) = sum else { return Ok(plain) };
        let augmented = sum.mul_scalar(1.0 / tta.n as f32)?;
        // torch.lerp(augmented, plain, beta) = augmented + beta * (plain - augmented).
        let probs = augmented.mul_scalar(1.0 - tta.beta)?.add(&plain.probs.mul_scalar(tta.beta)?)?;
        Ok(Preds { probs, targets: plain.targets, losses: None })
    }

    /// One validation-style pass over `source` (or the validation set) with [`GatherPreds`] added and the callbacks
    /// that log or keep results left out; the callback list and the loaders are put back as they were, even on error.
    fn inference_pass(&mut self, source: Option<Box<dyn BatchSource>>, with_loss: bool) -> Result<Preds> {
        let muted = self.mute_for_inference();
        let gather = GatherPreds::new(with_loss);
        self.add_cb(Box::new(gather));
        let saved = source.map(|s| std::mem::replace(&mut self.state_mut().dls.valid, s));
        let outcome = self.one_epoch(false);
        let gather = self.remove_cb::<GatherPreds>();
        if let Some(valid) = saved {
            self.state_mut().dls.valid = valid;
        }
        self.unmute(muted);
        outcome?;
        gather.map(|g| g.finish()).unwrap_or_else(|| {
            Err(LearnerError::InvalidArgument { what: "get_preds", msg: "the gathering callback disappeared".into() })
        })
    }
}

/// The validation set's files, labels and item transform (without its cache) less the files its loader has
/// skipped, with its policy for unreadable files, or an error naming `what` when the validation loader is not an
/// image folder. So a pass over them has the items of the validation batches, in their order.
pub(crate) fn valid_files(learn: &Learner, what: &'static str) -> Result<(ImageFolderDataset, BadFilePolicy)> {
    let valid = &learn.state().dls.valid;
    let Some(v) = valid.image_dataset() else {
        return Err(LearnerError::InvalidArgument {
            what,
            msg: "the validation loader holds no image files (it is not an image folder's DataLoader)".into(),
        });
    };
    let (skipped, policy) = valid.skipped_files();
    let kept = |i: &usize| !skipped.contains(&v.files()[*i]);
    let items: Vec<usize> = (0..v.files().len()).filter(kept).collect();
    let files = items.iter().map(|&i| v.files()[i].clone()).collect();
    let order: Vec<u32> = items.iter().map(|&i| i as u32).collect();
    Ok((ImageFolderDataset::from_targets(files, v.targets().select(&order), *v.transform())?, policy))
}

/// A loader over unlabelled image files with `tfm`, in the given order: every target class 0, or with
/// `multi_label_classes` an empty multi-hot row of that many classes.
pub(crate) fn test_loader(
    files: Vec<PathBuf>,
    tfm: ItemTransform,
    multi_label_classes: Option<usize>,
) -> Result<DataLoader<ImageFolderDataset>> {
    let targets = match multi_label_classes {
        Some(c) => Targets::multi_hot(vec![0; files.len() * c], c)?,
        None => Targets::classes(vec![0; files.len()]),
    };
    let ds = ImageFolderDataset::from_targets(files, targets, tfm.deterministic())?;
    Ok(DataLoader::new(ds, TEST_BS)?)
}

/// The name of class `c` in `vocab` (its number when it has none).
fn class_name(c: u32, vocab: &[String]) -> String {
    vocab.get(c as usize).cloned().unwrap_or_else(|| c.to_string())
}

/// The names of the classes `set` in `vocab`, joined by `;`.
pub(crate) fn label_names(set: &[u32], vocab: &[String]) -> String {
    set.iter().map(|&c| class_name(c, vocab)).collect::<Vec<_>>().join(";")
}

/// The placeholder loader of a learner that only predicts: no batch at all, with class indices, or with multi-hot
/// rows of `multi_label_classes`.
pub(crate) fn no_batches(multi_label_classes: Option<usize>) -> Result<InMemory> {
    let targets = match multi_label_classes {
        Some(c) => Targets::multi_hot(Vec::new(), c)?,
        None => Targets::default(),
    };
    Ok(InMemory::with_targets(Tensor::zeros(&[0, 1]), targets, 1)?)
}

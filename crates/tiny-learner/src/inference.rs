//! Inference on a learner: fastai's `get_preds`, `predict` and `tta`, batched, without gradients, on its device.

use std::path::{Path, PathBuf};

use tiny_data::{BadFilePolicy, BatchSource, DataLoader, ImageFolderDataset, InMemory, ItemTransform};
use tiny_tensor::Tensor;

use crate::callbacks::GatherPreds;
use crate::{Learner, LearnerError, Result};

/// The batch size of the loaders that [`Learner::test_dl`] builds.
pub const TEST_BS: usize = 64;

/// What [`Learner::get_preds`] returns: fastai's `(preds, targs, losses)`.
#[derive(Debug, Clone)]
pub struct Preds {
    /// The class probabilities (the softmax of the model's outputs), `[items, classes]`, on the CPU.
    pub probs: Tensor,
    /// The target of each item, as the loader gave it (0 for the unlabelled items of a `test_dl`).
    pub targets: Vec<u32>,
    /// Each item's cross-entropy loss, when asked for.
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

    /// The predicted class of each item, the argmax of its probabilities (fastai's `decoded`).
    pub fn decoded(&self) -> Result<Vec<u32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.probs.argmax(-1)?)
    }

    /// The fraction of items whose predicted class is their target.
    pub fn accuracy(&self) -> Result<f32> {
        let hits = self.decoded()?.iter().zip(&self.targets).filter(|(p, t)| p == t).count();
        Ok(hits as f32 / self.len().max(1) as f32)
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
    /// The predicted class's name.
    pub class: String,
    /// Its index in the vocabulary.
    pub index: u32,
    /// The probability of every class, in vocabulary order.
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

    /// fastai's `dls.test_dl(items)`: a loader of image files, unlabelled (every target is 0), with the item
    /// transform the learner was trained with.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] when the learner does not know its item transform (see
    /// [`Learner::with_export_info`]).
    pub fn test_dl(&self, files: Vec<PathBuf>) -> Result<DataLoader<ImageFolderDataset>> {
        let info = self.export_info("test_dl")?;
        test_loader(files, info.item_tfm)
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

    /// [`Learner::predict`] for several files at once, in batches.
    pub fn predict_all(&mut self, paths: &[PathBuf]) -> Result<Vec<Prediction>> {
        let vocab = self.export_info("predict")?.vocab.clone();
        let dl = self.test_dl(paths.to_vec())?;
        let preds = self.get_preds_on(Box::new(dl), false)?;
        let decoded = preds.decoded()?;
        let c = preds.n_classes();
        let probs = preds.probs.try_to_vec()?;
        Ok(decoded
            .iter()
            .enumerate()
            .map(|(i, &index)| Prediction {
                class: vocab.get(index as usize).cloned().unwrap_or_default(),
                index,
                probs: probs[i * c..(i + 1) * c].to_vec(),
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
            let ds = ImageFolderDataset::from_labelled(ds.files().to_vec(), ds.labels().to_vec(), tfm)?;
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
    let labels = items.iter().map(|&i| v.labels()[i]).collect();
    Ok((ImageFolderDataset::from_labelled(files, labels, *v.transform())?, policy))
}

/// A loader over unlabelled image files with `tfm`, in the given order.
pub(crate) fn test_loader(files: Vec<PathBuf>, tfm: ItemTransform) -> Result<DataLoader<ImageFolderDataset>> {
    let labels = vec![0; files.len()];
    let ds = ImageFolderDataset::from_labelled(files, labels, tfm.deterministic())?;
    Ok(DataLoader::new(ds, TEST_BS)?)
}

/// The placeholder loader of a learner that only predicts: no batch at all.
pub(crate) fn no_batches() -> Result<InMemory> {
    Ok(InMemory::new(Tensor::zeros(&[0, 1]), Vec::new(), 1)?)
}

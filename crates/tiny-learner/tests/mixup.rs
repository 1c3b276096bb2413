//! Mixup: mixed inputs are convex pairs, the loss is the matching mix, validation is untouched.

use tiny_learner::{Callback, CbResult, DataLoaders, InMemory, Learner, LearnerError, LearnerState, Mixup};
use tiny_nn::{Linear, cross_entropy, cross_entropy_items};
use tiny_tensor::Tensor;

/// Checks, after Mixup (order 0) has run, what it did to each batch.
#[derive(Default)]
struct Probe {
    /// For each training batch, per row: its weight lam (1 when unmixed) and its partner row.
    mixes: Vec<(Vec<f32>, Vec<usize>)>,
    /// Whether to expect one weight per batch (`Mixup::per_batch`).
    per_batch: bool,
    valid_rows_untouched: bool,
    loss_checked: usize,
}

impl Callback for Probe {
    fn order(&self) -> i32 {
        10
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        let n = learn.batch.len();
        let x = learn.batch.x.to_vec();
        let rows: Vec<&[f32]> = x.chunks(8).collect();
        if !learn.training {
            // Each validation row is the one-hot of its label.
            self.valid_rows_untouched = rows
                .iter()
                .zip(learn.batch.y.as_slice())
                .all(|(r, &y)| r[y as usize] == 1.0 && r.iter().sum::<f32>() == 1.0);
            return Ok(());
        }
        self.mixes.push(read_mix(&rows, &learn.batch.y.as_slice()[..n], self.per_batch));
        Ok(())
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training {
            return Ok(());
        }
        let (lam, partners) = self.mixes.last().unwrap().clone();
        let y = learn.batch.y.as_slice();
        let y_perm: Vec<u32> = partners.iter().map(|&p| y[p]).collect();
        let want = if self.per_batch {
            let l = lam.iter().copied().find(|&l| l < 1.0).unwrap_or(1.0);
            l * cross_entropy(&learn.preds, y)?.item()? + (1.0 - l) * cross_entropy(&learn.preds, &y_perm)?.item()?
        } else {
            let (a, b) =
                (cross_entropy_items(&learn.preds, y)?.to_vec(), cross_entropy_items(&learn.preds, &y_perm)?.to_vec());
            lam.iter().zip(a.iter().zip(&b)).map(|(l, (a, b))| l * a + (1.0 - l) * b).sum::<f32>() / lam.len() as f32
        };
        assert!((learn.loss.item()? - want).abs() < 1e-5, "loss {} != {want}", learn.loss.item()?);
        self.loss_checked += 1;
        Ok(())
    }
}

/// Reads each row's weight and partner (its position in the batch) back from a mixed batch of one-hot
/// rows whose labels are their classes.
fn read_mix(rows: &[&[f32]], y: &[u32], per_batch: bool) -> (Vec<f32>, Vec<usize>) {
    let (mut lams, mut partners) = (Vec::new(), Vec::new());
    for (r, &own) in rows.iter().zip(y) {
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5, "a convex combination");
        let own_w = r[own as usize];
        assert!(own_w >= 0.5 - 1e-6, "the original dominates");
        lams.push(own_w);
        let other = (0..8).find(|&c| c != own as usize && r[c] > 1e-6).unwrap_or(own as usize);
        partners.push(y.iter().position(|&l| l as usize == other).unwrap());
    }
    if per_batch {
        let mixed: Vec<f32> = lams.iter().copied().filter(|&l| l < 1.0 - 1e-6).collect();
        assert!(mixed.iter().all(|l| (l - mixed[0]).abs() < 1e-5), "one lam per batch: {mixed:?}");
    }
    (lams, partners)
}

/// Eight items, each the one-hot of its own class; fastai's per-item Mixup.
fn learner(seed: u64, alpha: f32) -> Learner {
    learner_with(seed, Mixup::new(alpha).unwrap(), false)
}

fn learner_with(seed: u64, mixup: Mixup, per_batch: bool) -> Learner {
    let x = Tensor::from_vec((0..64).map(|i| if i % 9 == 0 { 1.0 } else { 0.0 }).collect(), &[8, 8]).unwrap();
    let y: Vec<u32> = (0..8).collect();
    let dls =
        DataLoaders::new(InMemory::new(x.clone(), y.clone(), 8).unwrap().shuffle(3), InMemory::new(x, y, 8).unwrap());
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(mixup), Box::new(Probe { per_batch, ..Probe::default() })];
    Learner::new(Box::new(Linear::new(8, 8).unwrap()), dls, cross_entropy, 0.1, cbs).with_seed(seed)
}

#[test]
fn inputs_and_losses_are_mixed_in_training_only() {
    let mut learn = learner(1, 0.4);
    learn.fit(6).unwrap();
    let probe = learn.callback::<Probe>().unwrap();
    assert_eq!(probe.mixes.len(), 6);
    assert_eq!(probe.loss_checked, 6);
    assert!(probe.valid_rows_untouched);
    let lams = &learn.callback::<Mixup>().unwrap().lams;
    assert_eq!(lams.len(), 6 * 8, "one weight per item");
    assert!(lams.iter().all(|&l| (0.5..=1.0).contains(&l)));
    // Each mixed row's weight is the one drawn for it (an unmixed row, paired with itself, reads as 1).
    let seen = probe.mixes.iter().flat_map(|(l, _)| l);
    assert!(seen.zip(lams).all(|(s, l)| (s - l).abs() < 1e-5 || (s - 1.0).abs() < 1e-6));
    let distinct = lams.iter().filter(|&&l| (l - lams[0]).abs() > 1e-4).count();
    assert!(distinct > 0, "weights differ between items");
}

#[test]
fn per_batch_mixup_mixes_the_learners_loss() {
    let mut learn = learner_with(2, Mixup::per_batch(0.4).unwrap(), true);
    learn.fit(4).unwrap();
    let probe = learn.callback::<Probe>().unwrap();
    assert_eq!((probe.mixes.len(), probe.loss_checked), (4, 4));
    assert_eq!(learn.callback::<Mixup>().unwrap().lams.len(), 4, "one weight per batch");
}

#[test]
fn the_same_seed_mixes_the_same_way() {
    let lams = |seed| {
        let mut learn = learner(seed, 0.4);
        learn.fit(3).unwrap();
        learn.callback::<Mixup>().unwrap().lams.clone()
    };
    assert_eq!(lams(5), lams(5));
    assert_ne!(lams(5), lams(6));
}

#[test]
fn bad_alpha_is_an_error() {
    for alpha in [0.0, -1.0, f32::NAN] {
        assert!(matches!(Mixup::new(alpha), Err(LearnerError::InvalidArgument { .. })), "{alpha}");
    }
}

/// Keeps the first training batch's inputs and targets as CutMix left them, and the loss it made.
#[derive(Default)]
struct CutProbe {
    x: Option<(Vec<usize>, Vec<f32>)>,
    loss: Option<f32>,
}

impl tiny_learner::Callback for CutProbe {
    fn order(&self) -> i32 {
        1
    }

    fn before_batch(&mut self, learn: &mut tiny_learner::LearnerState) -> tiny_learner::CbResult {
        if learn.training && self.x.is_none() {
            self.x = Some((learn.batch.x.shape().to_vec(), learn.batch.x.to_vec()));
        }
        Ok(())
    }

    fn after_loss(&mut self, learn: &mut tiny_learner::LearnerState) -> tiny_learner::CbResult {
        if learn.training && self.loss.is_none() {
            self.loss = Some(learn.loss.item()?);
        }
        Ok(())
    }
}

#[test]
fn cutmix_pastes_one_box_of_a_partner_and_mixes_the_losses_by_area() {
    use tiny_learner::{CutMix, DataLoaders, InMemory, Learner};
    // Eight 1-channel 10x10 images, image i filled with the value i, so every pixel tells whose it is.
    let x: Vec<f32> = (0..8).flat_map(|i| std::iter::repeat_n(i as f32, 100)).collect();
    let x = tiny_tensor::Tensor::from_vec(x, &[8, 1, 10, 10]).unwrap();
    let y: Vec<u32> = (0..8).map(|i| i % 2).collect();
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 8).unwrap(), InMemory::new(x, y, 8).unwrap());
    let model = Box::new(tiny_nn::Sequential::new(vec![
        Box::new(tiny_nn::Flatten::new()),
        Box::new(tiny_nn::Linear::new(100, 2).unwrap()),
    ]));
    let cbs: Vec<Box<dyn tiny_learner::Callback>> =
        vec![Box::new(CutMix::new(1.0).unwrap()), Box::new(CutProbe::default())];
    let mut learn = Learner::new(model, dls, tiny_nn::cross_entropy, 0.0, cbs).with_seed(3);
    learn.fit(1).unwrap();
    let lam = learn.callback::<CutMix>().unwrap().lams[0];
    let (shape, pixels) = learn.callback::<CutProbe>().unwrap().x.clone().unwrap();
    assert_eq!(shape, [8, 1, 10, 10]);
    let mut partners = Vec::new();
    for (i, image) in pixels.chunks(100).enumerate() {
        let own = image.iter().filter(|&&p| p == i as f32).count();
        assert!((own as f32 / 100.0 - lam).abs() < 1e-6 || own == 100, "image {i}: {own} own pixels, lam {lam}");
        // The pasted pixels all come from one partner and form one box, the same box in every image.
        let pasted: Vec<usize> = (0..100).filter(|&p| image[p] != i as f32).collect();
        let from: std::collections::BTreeSet<u32> = pasted.iter().map(|&p| image[p] as u32).collect();
        assert!(from.len() <= 1, "image {i} has pixels of {from:?}");
        partners.push((pasted, from.into_iter().next()));
    }
    let boxes: std::collections::BTreeSet<_> =
        partners.iter().filter(|(_, f)| f.is_some()).map(|(p, _)| p.clone()).collect();
    assert!(boxes.len() <= 1, "one box for the whole batch");
    assert!(lam > 0.0 && lam <= 1.0);
    // The loss: lam * CE(y) + (1 - lam) * CE(y of the partner), on the pasted images (lr 0 keeps the model).
    let y: Vec<u32> = (0..8).map(|i| i % 2).collect();
    let y_perm: Vec<u32> = partners.iter().enumerate().map(|(i, (_, f))| y[f.map_or(i, |f| f as usize)]).collect();
    let cut = tiny_tensor::Tensor::from_vec(pixels, &[8, 1, 10, 10]).unwrap();
    let preds = learn.model.call(&cut).unwrap();
    let own = tiny_nn::cross_entropy(&preds, &y).unwrap().item().unwrap();
    let other = tiny_nn::cross_entropy(&preds, &y_perm).unwrap().item().unwrap();
    let loss = learn.callback::<CutProbe>().unwrap().loss.unwrap();
    assert!((loss - (lam * own + (1.0 - lam) * other)).abs() < 1e-5, "{loss} vs {own} and {other} at {lam}");
}

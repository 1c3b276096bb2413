//! fastai's aug_transforms on the batch tensor: neutral when disabled, seeded per batch, the warp's homography,
//! the lighting formula, and a fit that augments training batches only.

use tiny_data::Normalize;
use tiny_learner::{AugTransforms, Callback, CbResult, DataLoaders, InMemory, Learner, LearnerState, find_coeffs};
use tiny_tensor::Tensor;

const STATS: Normalize = Normalize { mean: [0.5, 0.4, 0.3], std: [0.25, 0.2, 0.3] };

/// Keeps every batch's inputs as the model receives them, with whether it was a training batch.
#[derive(Default)]
struct Seen(Vec<(bool, Vec<f32>)>);

impl Callback for Seen {
    fn order(&self) -> i32 {
        10
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        self.0.push((learn.training, learn.batch.x.to_vec()));
        Ok(())
    }
}

/// Eight 12x12 RGB images (NHWC, values in (0, 1)) in batches of four, through SetupLearner's normalisation.
fn learner(aug: AugTransforms) -> Learner {
    let x: Vec<f32> = (0..8 * 12 * 12 * 3).map(|i| 0.05 + 0.9 * ((i * 37 % 101) as f32 / 101.0)).collect();
    let x = Tensor::from_vec(x, &[8, 12, 12, 3]).unwrap();
    let y: Vec<u32> = (0..8).map(|i| i % 2).collect();
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 4).unwrap(), InMemory::new(x, y, 4).unwrap());
    let model = Box::new(tiny_nn::Sequential::new(vec![
        Box::new(tiny_nn::Flatten::new()),
        Box::new(tiny_nn::Linear::new(12 * 12 * 3, 2).unwrap()),
    ]));
    let setup = tiny_learner::SetupLearner::normalize(tiny_tensor::Device::Cpu, STATS.mean, STATS.std);
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(setup), Box::new(aug), Box::new(Seen::default())];
    Learner::new(model, dls, tiny_nn::cross_entropy, 0.0, cbs).with_seed(11)
}

/// The batches each phase saw in a fit of one epoch.
fn batches(aug: AugTransforms) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut learn = learner(aug);
    learn.fit(1).unwrap();
    let seen = &learn.callback::<Seen>().unwrap().0;
    let pick = |train: bool| seen.iter().filter(|(t, _)| *t == train).map(|(_, x)| x.clone()).collect();
    (pick(true), pick(false))
}

#[test]
fn disabled_transforms_leave_every_batch_exactly_as_it_was() {
    let (plain_train, plain_valid) = batches(AugTransforms::none(STATS));
    let mut never = AugTransforms::new(STATS);
    (never.do_flip, never.p_affine, never.p_lighting) = (false, 0.0, 0.0);
    let (train, valid) = batches(never);
    assert_eq!(train, plain_train);
    assert_eq!(valid, plain_valid);
}

#[test]
fn training_batches_are_augmented_repeatably_and_validation_is_not() {
    let (plain_train, plain_valid) = batches(AugTransforms::none(STATS));
    let (train, valid) = batches(AugTransforms::new(STATS));
    let (again, _) = batches(AugTransforms::new(STATS));
    assert_eq!(valid, plain_valid, "validation is never augmented");
    assert_ne!(train, plain_train, "fastai's defaults change the training batches");
    assert_eq!(train, again, "seeded by (seed, epoch, batch)");
    let mut a = AugTransforms::rng(11, 0, 0);
    let mut b = AugTransforms::rng(11, 0, 1);
    let aug = AugTransforms::new(STATS);
    assert_ne!(aug.draw(&mut a), aug.draw(&mut b), "each batch draws its own");
}

#[test]
fn the_warp_homography_sends_the_corners_where_fastai_puts_them() {
    let (dx, dy) = (0.13f32, -0.07f32);
    let from = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]];
    let to = [[-1.0 - dy, -1.0 - dx], [-1.0 + dy, 1.0 + dx], [1.0 + dy, -1.0 + dx], [1.0 - dy, 1.0 - dx]];
    let h = find_coeffs(&to, &from).unwrap();
    for (f, t) in from.iter().zip(&to) {
        let (u, v, s) =
            (h[0] * f[0] + h[1] * f[1] + h[2], h[3] * f[0] + h[4] * f[1] + h[5], h[6] * f[0] + h[7] * f[1] + h[8]);
        assert!(
            (u / s - t[0]).abs() < 1e-5 && (v / s - t[1]).abs() < 1e-5,
            "{f:?} -> {:?}, want {t:?}",
            (u / s, v / s)
        );
    }
    assert!(find_coeffs(&[[0.0, 0.0]; 4], &[[0.0, 0.0]; 4]).is_none(), "degenerate points");
}

#[test]
fn lighting_is_fastai_s_logit_brightness_and_contrast() {
    // Only lighting, always: each pixel p becomes sigmoid((logit(p) + logit(b)) * c), between the normalisations.
    let mut aug = AugTransforms::none(STATS);
    (aug.max_lighting, aug.p_lighting) = (0.2, 1.0);
    let (plain, _) = batches(AugTransforms::none(STATS));
    let (lit, _) = batches(aug.clone());
    let mut rng = AugTransforms::rng(11, 0, 0);
    let draws: Vec<_> = (0..4).map(|_| aug.draw(&mut rng)).collect();
    let logit = |p: f32| (p / (1.0 - p)).ln();
    for (i, (p, q)) in plain[0].iter().zip(&lit[0]).enumerate() {
        // plain[0] is the first training batch [4, 3, 12, 12], normalised.
        let (item, channel) = (i / (3 * 144), i / 144 % 3);
        let (_, b, c) = draws[item];
        let raw = p * STATS.std[channel] + STATS.mean[channel];
        let want = 1.0 / (1.0 + (-(logit(raw) + logit(b)) * c).exp());
        let got = q * STATS.std[channel] + STATS.mean[channel];
        assert!((got - want).abs() < 1e-4, "pixel {i}: {got} vs {want} (b {b}, c {c})");
    }
    assert!(draws.iter().all(|(m, _, _)| *m == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]), "no geometry");
}

#[test]
fn a_flip_alone_mirrors_exactly_the_images_it_draws() {
    let mut aug = AugTransforms::none(STATS);
    aug.do_flip = true;
    let (plain, _) = batches(AugTransforms::none(STATS));
    let (flipped, _) = batches(aug.clone());
    let mut rng = AugTransforms::rng(11, 0, 0);
    let draws: Vec<_> = (0..4).map(|_| aug.draw(&mut rng)).collect();
    assert!(draws.iter().any(|d| d.0[0] == -1.0), "seed 11 flips at least one image of the first batch");
    for (item, (m, _, _)) in draws.iter().enumerate() {
        for c in 0..3 {
            for row in 0..12 {
                for col in 0..12 {
                    let at = |col: usize| ((item * 3 + c) * 12 + row) * 12 + col;
                    let src = if m[0] == -1.0 { at(11 - col) } else { at(col) };
                    assert_eq!(flipped[0][at(col)], plain[0][src], "item {item} channel {c} ({row}, {col})");
                }
            }
        }
    }
}

/// Writes `/tmp/aug_batch.png`, sixteen augmented synthetic images, to look at; run with `--ignored`.
#[test]
#[ignore]
#[cfg(feature = "plot")]
fn sample_picture_of_augmented_images() {
    let dir = std::env::temp_dir().join("tiny-aug-sample");
    let _ = std::fs::remove_dir_all(&dir);
    tiny_data::synth::generate_with(&dir, 0.01, 1, 2).unwrap();
    let cfg = tiny_data::FolderConfig { size: 96, bs: 16, num_workers: 1, ..Default::default() };
    let dls = tiny_data::DataLoaders::from_folder(&dir, &cfg).unwrap();
    let vocab = dls.vocab.names().to_vec();
    let b = dls.train.iter_epoch(0).next().unwrap().unwrap();
    let stats = tiny_data::Normalize::from_batch(&b).unwrap();
    let setup = tiny_learner::SetupLearner::normalize(tiny_tensor::Device::Cpu, stats.mean, stats.std);
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(setup), Box::new(AugTransforms::new(stats))];
    let model = Box::new(tiny_nn::simple_cnn(vocab.len()).unwrap());
    let mut learn = Learner::new(model, dls, tiny_nn::cross_entropy, 0.1, cbs);
    learn.state_mut().batch = tiny_learner::Batch { x: b.x, y: b.y };
    learn.state_mut().training = true;
    learn.event(tiny_learner::Event::BeforeBatch).unwrap();
    let batch = learn.state().batch.clone();
    tiny_learner::show_batch_denormalized(&batch, &vocab, &stats, std::path::Path::new("/tmp/aug_batch.png"), 16)
        .unwrap();
}

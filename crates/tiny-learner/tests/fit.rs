//! End to end in memory: the chapter's simple_cnn learns a small synthetic image set well past chance.

mod common;

use common::textures;
use tiny_learner::{DataLoaders, InMemory, Learner, OneCycle, Recorder, SetupLearner, TrackResults};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::{Device, Precision, Tensor};

/// Six one-cycle epochs of simple_cnn on the textures, with its products in `precision`.
fn fit_textures(precision: Precision) -> Learner {
    tiny_nn::manual_seed(0);
    let (x, y) = textures(240, 11);
    let (vx, vy) = textures(90, 12);
    let x = Tensor::from_vec(x, &[240, 16, 16, 3]).unwrap();
    let vx = Tensor::from_vec(vx, &[90, 16, 16, 3]).unwrap();
    let dls = DataLoaders::new(InMemory::new(x, y, 32).unwrap().shuffle(0), InMemory::new(vx, vy, 64).unwrap());
    let setup = SetupLearner::normalize(Device::Cpu, [0.5; 3], [0.3; 3]);
    let cbs: Vec<Box<dyn tiny_learner::Callback>> = vec![
        Box::new(setup),
        Box::new(TrackResults::quiet()),
        Box::new(OneCycle::new(0.2)),
        Box::new(Recorder::new().show_table(false).show_progress(false)),
    ];
    let mut learn =
        Learner::new(Box::new(simple_cnn(3).unwrap()), dls, cross_entropy, 0.2, cbs).with_precision(precision);
    learn.fit(6).unwrap();
    learn
}

#[test]
fn simple_cnn_beats_chance_on_synthetic_images() {
    let learn = fit_textures(Precision::Fp32);
    let track = learn.callback::<TrackResults>().unwrap();
    for r in &track.history {
        eprintln!("{}", r.line());
    }
    let valid = track.last_valid().unwrap();
    assert!(valid.acc > 0.6, "valid accuracy {} is not well past chance (1/3)", valid.acc);
    let first = learn.history.first().unwrap().valid_loss.unwrap();
    assert!(learn.history.last().unwrap().valid_loss.unwrap() < first);
}

#[test]
fn bf16_mixed_precision_learns_as_fp32_does() {
    let (fp32, bf16) = (fit_textures(Precision::Fp32), fit_textures(Precision::Bf16));
    let acc = |l: &Learner| l.callback::<TrackResults>().unwrap().last_valid().unwrap().acc;
    let loss = |l: &Learner| l.history.last().unwrap().valid_loss.unwrap();
    assert!(acc(&bf16) > 0.6, "bf16 valid accuracy {}", acc(&bf16));
    assert!((acc(&bf16) - acc(&fp32)).abs() < 0.1, "bf16 {} vs fp32 {}", acc(&bf16), acc(&fp32));
    // The same training, with products rounded to bf16: close, and not the same numbers.
    assert!((loss(&bf16) - loss(&fp32)).abs() < 0.1 * loss(&fp32), "{} vs {}", loss(&bf16), loss(&fp32));
    assert_ne!(loss(&bf16), loss(&fp32));
    // The master weights stay f32 values, not bf16 ones.
    let w = bf16.model.parameters()[0].to_vec();
    assert!(w.iter().any(|v| v.to_bits() & 0xffff != 0), "the weights were stored as bf16");
}

#[test]
fn the_prelude_is_enough_for_the_chapter() {
    use tiny_learner::prelude::*;
    let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0, 2.0, 1.0, -2.0, 1.0], &[4, 2]).unwrap();
    let y = vec![1, 0, 1, 0];
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 2).unwrap(), InMemory::new(x, y, 4).unwrap());
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(TrackResults::quiet())];
    let mut learn = Learner::new(Linear::new(2, 2).unwrap(), dls, cross_entropy, 0.5, cbs)
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr)))
        .with_metrics(vec![accuracy()]);
    learn.fit(20).unwrap();
    assert_eq!(learn.callback::<TrackResults>().unwrap().last_valid().unwrap().acc, 1.0);
    assert_eq!(learn.precision, Precision::Fp32);
}

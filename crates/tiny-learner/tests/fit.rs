//! End to end in memory: the chapter's simple_cnn learns a small synthetic image set well past chance.

mod common;

use common::Lcg;
use tiny_learner::{InMemory, Learner, Loaders, OneCycle, Recorder, SetupLearner, TrackResults};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::{Device, Tensor};

const SIZE: usize = 16;

/// `n` NHWC images of three textures (horizontal stripes, vertical stripes, checks) with random
/// phase, colour and noise, so that neither colour nor position alone tells the classes apart.
fn images(n: usize, seed: u64) -> (Tensor, Vec<u32>) {
    let mut rng = Lcg(seed);
    let (mut xs, mut ys) = (Vec::with_capacity(n * SIZE * SIZE * 3), Vec::new());
    for i in 0..n {
        let class = (i % 3) as u32;
        let phase = ((rng.next() + 1.0) * 2.0) as usize;
        let colour = [rng.next() * 0.3 + 0.5, rng.next() * 0.3 + 0.5, rng.next() * 0.3 + 0.5];
        for r in 0..SIZE {
            for c in 0..SIZE {
                let on = match class {
                    0 => ((r + phase) / 2).is_multiple_of(2),
                    1 => ((c + phase) / 2).is_multiple_of(2),
                    _ => ((r + phase) / 2 + (c + phase) / 2).is_multiple_of(2),
                };
                for ch in colour {
                    let v = if on { ch } else { 1.0 - ch };
                    xs.push((v + rng.next() * 0.15).clamp(0.0, 1.0));
                }
            }
        }
        ys.push(class);
    }
    (Tensor::from_vec(xs, &[n, SIZE, SIZE, 3]).unwrap(), ys)
}

#[test]
fn simple_cnn_beats_chance_on_synthetic_images() {
    tiny_nn::manual_seed(0);
    let (x, y) = images(240, 11);
    let (vx, vy) = images(90, 12);
    let dls = Loaders::new(InMemory::new(x, y, 32).unwrap().shuffle(0), InMemory::new(vx, vy, 64).unwrap());
    let setup = SetupLearner::normalize(Device::Cpu, [0.5; 3], [0.3; 3]);
    let cbs: Vec<Box<dyn tiny_learner::Callback>> = vec![
        Box::new(setup),
        Box::new(TrackResults::quiet()),
        Box::new(OneCycle::new(0.2)),
        Box::new(Recorder::new().show_table(false).show_progress(false)),
    ];
    let mut learn = Learner::new(Box::new(simple_cnn(3).unwrap()), dls, cross_entropy, 0.2, cbs);
    learn.fit(6).unwrap();
    let track = learn.callback::<TrackResults>().unwrap();
    for r in &track.history {
        eprintln!("{}", r.line());
    }
    let valid = track.last_valid().unwrap();
    assert!(valid.acc > 0.6, "valid accuracy {} is not well past chance (1/3)", valid.acc);
    let first = learn.history.first().unwrap().valid_loss.unwrap();
    assert!(learn.history.last().unwrap().valid_loss.unwrap() < first);
}

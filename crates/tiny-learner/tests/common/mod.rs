//! Helpers shared by the integration tests: small in-memory data sets, tiny models, an event log.
#![allow(dead_code)]

use std::path::PathBuf;

use tiny_learner::{Callback, Cancel, CbResult, DataLoaders, Event, InMemory, Learner, LearnerState};
use tiny_nn::{Linear, Module, ReLU, Sequential, cross_entropy};
use tiny_tensor::Tensor;

/// A deterministic stream of numbers in `[-1, 1)`.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `n` 16x16 RGB images (NHWC values in `[0, 1]`) of three textures (horizontal stripes, vertical
/// stripes, checks) with random phase, colour and noise, so that neither colour nor position alone
/// tells the classes apart; item `i` has class `i % 3`.
pub fn textures(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    const SIZE: usize = 16;
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
    (xs, ys)
}

/// `n` points in the plane in three classes by angle, so a small MLP separates them well.
pub fn points(n: usize, seed: u64) -> (Tensor, Vec<u32>) {
    let mut rng = Lcg(seed);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (a, b) = (rng.next(), rng.next());
        let angle = b.atan2(a) + std::f32::consts::PI;
        xs.extend([a, b]);
        ys.push(((angle / (2.0 * std::f32::consts::PI / 3.0)) as u32).min(2));
    }
    (Tensor::from_vec(xs, &[n, 2]).unwrap(), ys)
}

/// Training and validation sources of `points`.
pub fn point_loaders(n_train: usize, n_valid: usize, bs: usize, shuffle: Option<u64>) -> DataLoaders {
    let (x, y) = points(n_train, 1);
    let mut train = InMemory::new(x, y, bs).unwrap();
    if let Some(seed) = shuffle {
        train = train.shuffle(seed);
    }
    let (vx, vy) = points(n_valid, 2);
    DataLoaders::new(train, InMemory::new(vx, vy, bs).unwrap()).into()
}

/// A two-layer perceptron for `points`.
pub fn mlp() -> Box<dyn Module> {
    Box::new(Sequential::new(vec![
        Box::new(Linear::new(2, 16).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Linear::new(16, 3).unwrap()),
    ]))
}

/// A learner on `points` with the given callbacks, plain SGD and cross entropy.
pub fn point_learner(loaders: DataLoaders, lr: f32, cbs: Vec<Box<dyn Callback>>) -> Learner {
    Learner::new(mlp(), loaders, cross_entropy, lr, cbs)
}

/// The values of every tensor of a model, in `state_dict` order.
pub fn weights(model: &dyn Module) -> Vec<Vec<f32>> {
    model.state_dict().iter().map(|(_, t)| t.to_vec()).collect()
}

/// Where `EventLog` cancels: at this event when `iter`, `epoch` and `training` match (None matches
/// any), raising this `Cancel`.
pub type CancelPoint = (Event, Option<usize>, Option<usize>, Option<bool>, Cancel);

/// A callback that logs every event it sees and can raise one cancellation at a chosen point.
#[derive(Default)]
pub struct EventLog {
    pub events: Vec<String>,
    pub cancel_at: Option<CancelPoint>,
    pub order: i32,
}

impl EventLog {
    pub fn cancelling(event: Event, iter: Option<usize>, training: Option<bool>, cancel: Cancel) -> Self {
        EventLog { cancel_at: Some((event, iter, None, training, cancel)), ..Default::default() }
    }

    pub fn names(&self) -> Vec<&str> {
        self.events.iter().map(String::as_str).collect()
    }
}

impl Callback for EventLog {
    fn order(&self) -> i32 {
        self.order
    }

    fn on(&mut self, event: Event, learn: &mut LearnerState) -> CbResult {
        self.events.push(event.name().to_string());
        if let Some((e, iter, epoch, training, cancel)) = self.cancel_at
            && e == event
            && iter.is_none_or(|i| i == learn.iter)
            && epoch.is_none_or(|i| i == learn.epoch)
            && training.is_none_or(|t| t == learn.training)
        {
            return Err(cancel.into());
        }
        Ok(())
    }
}

/// A fresh empty directory under the system's temp dir, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-learner-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The batch-level events of one training batch and of one validation batch.
pub const TRAIN_BATCH: [&str; 8] = [
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
];
pub const VALID_BATCH: [&str; 4] = ["before_batch", "after_pred", "after_loss", "after_batch"];

/// Stops the fit after epoch `epoch`, as a crash would (but after the checkpoint is written).
pub struct InterruptAfter(pub usize);

impl Callback for InterruptAfter {
    fn order(&self) -> i32 {
        100
    }
    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.epoch == self.0 { Err(Cancel::Fit.into()) } else { Ok(()) }
    }
}

//! Chapter 19 as one short program: data, `Normalize` from one batch, `simple_cnn`, and a `Learner`
//! with the chapter's callbacks, trained with one cycle.
//!
//! `cargo run --release -p tiny-learner --example chapter -- [DIR]` (default: a small synthetic
//! Imagenette-shaped set, generated into `data/synth-small` on first use).

use std::path::PathBuf;

use anyhow::Context;
use tiny_data::{DataLoaders, FolderConfig, Normalize};
use tiny_learner::{Callback, Learner, OneCycle, SetupLearner, TrackResults};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::Device;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data/synth-small"));
    if !path.exists() {
        tiny_data::synth::generate(&path, 0.1, 0)?;
    }
    // dls = DataLoaders(train, valid): images squashed to 64x64, batches of 128, shuffled training set.
    let dls = DataLoaders::from_folder(&path, &FolderConfig::default())?;
    // stats = [xb.mean((0,1,2)), xb.std((0,1,2))] of the first training batch.
    let xb = dls.train.iter_epoch(0).next().context("no training images")??;
    let norm = Normalize::from_batch(&xb)?;
    // cbs = [SetupLearnerCB(tfm_x), TrackResults(), OneCycle(0.1)]
    let cbs: Vec<Box<dyn Callback>> = vec![
        Box::new(SetupLearner::normalize(Device::Cpu, norm.mean, norm.std)),
        Box::new(TrackResults::new()),
        Box::new(OneCycle::new(0.1)),
    ];
    let model = simple_cnn(dls.vocab.len())?;
    let mut learn = Learner::new(model, dls, cross_entropy, 0.1, cbs);
    learn.fit(5)?;
    Ok(())
}

//! End to end from files: PNG image folders, tiny-data's loader, Normalize, simple_cnn and the Learner.

mod common;

use std::io::BufWriter;
use std::path::Path;

use common::{temp_dir, textures};
use tiny_data::{DataLoaders, FolderConfig, Normalize};
use tiny_learner::{Callback, Learner, OneCycle, SetupLearner, TrackResults};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::Device;

/// Writes `n` texture images as 16x16 PNGs into `root/split/<class>/`.
fn write_split(root: &Path, split: &str, n: usize, seed: u64) {
    let (x, y) = textures(n, seed);
    for (i, (pixels, class)) in x.chunks(16 * 16 * 3).zip(y).enumerate() {
        let dir = root.join(split).join(["stripes_h", "stripes_v", "checks"][class as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join(format!("{i:04}.png"))).unwrap();
        let mut enc = png::Encoder::new(BufWriter::new(file), 16, 16);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let bytes: Vec<u8> = pixels.iter().map(|v| (v * 255.0).round() as u8).collect();
        enc.write_header().unwrap().write_image_data(&bytes).unwrap();
    }
}

#[test]
fn simple_cnn_learns_png_folders_through_tiny_data() {
    let root = temp_dir("folder");
    write_split(&root, "train", 240, 21);
    write_split(&root, "val", 90, 22);
    let cfg = FolderConfig { size: 16, bs: 32, num_workers: 2, seed: 1, ..FolderConfig::default() };
    let dls = DataLoaders::from_folder(&root, &cfg).unwrap();
    assert_eq!(dls.vocab.names(), ["checks", "stripes_h", "stripes_v"]);
    let first = dls.train.iter_epoch(0).next().unwrap().unwrap();
    assert_eq!(first.x.shape(), &[32, 16, 16, 3]);
    let norm = Normalize::from_batch(&first).unwrap();

    tiny_nn::manual_seed(0);
    let cbs: Vec<Box<dyn Callback>> = vec![
        Box::new(SetupLearner::normalize(Device::Cpu, norm.mean, norm.std)),
        Box::new(TrackResults::quiet()),
        Box::new(OneCycle::new(0.2)),
    ];
    let mut learn = Learner::new(Box::new(simple_cnn(3).unwrap()), dls, cross_entropy, 0.2, cbs);
    learn.fit(6).unwrap();
    let track = learn.callback::<TrackResults>().unwrap();
    let valid = track.last_valid().unwrap();
    eprintln!("{}", valid.line());
    assert_eq!(valid.n, 90);
    assert!(valid.acc > 0.6, "valid accuracy {} is not well past chance (1/3)", valid.acc);
}

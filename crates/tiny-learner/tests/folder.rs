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

/// One epoch of simple_cnn over the folder `folder` read as `cfg` says; returns the validation loss.
fn one_epoch(folder: tiny_data::ImageFolder, cfg: &FolderConfig) -> f32 {
    let dls = DataLoaders::from_image_folder(folder, cfg).unwrap();
    let (classes, multi_label) = (dls.vocab.len(), dls.multi_label());
    let setup = SetupLearner::normalize(Device::Cpu, [0.5; 3], [0.25; 3]);
    let loss = if multi_label { tiny_nn::bce_with_logits_flat } else { cross_entropy };
    let mut learn = Learner::new(simple_cnn(classes).unwrap(), dls, loss, 0.1, vec![Box::new(setup)]);
    learn.fit(1).unwrap();
    learn.state().history.last().unwrap().valid_loss.unwrap()
}

#[test]
#[cfg(unix)]
fn every_data_layout_trains_one_epoch() {
    // Issue 28's layouts, each read as fastai reads it and trained for one epoch: split folders, an unsplit folder,
    // a CSV (single- and multi-label), pets-style names, images nested below their class, and linked folders.
    use tiny_data::{Column, CsvColumns, ImageFolder};
    let root = temp_dir("layouts");
    let cfg = FolderConfig { size: 16, bs: 8, num_workers: 1, seed: 1, ..FolderConfig::default() };
    let split = root.join("split");
    write_split(&split, "train", 24, 31);
    write_split(&split, "val", 12, 32);
    // Nested: a second copy of some training images two folders below their class.
    let class = split.join("train/checks");
    let first = std::fs::read_dir(&class).unwrap().flatten().map(|e| e.path()).find(|p| p.is_file()).unwrap();
    std::fs::create_dir_all(class.join("deep/er")).unwrap();
    std::fs::copy(&first, class.join("deep/er/nested.png")).unwrap();
    // Linked: the validation split of another folder is a symbolic link to this one's.
    let linked = root.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink(split.join("train"), linked.join("train")).unwrap();
    std::os::unix::fs::symlink(split.join("val"), linked.join("val")).unwrap();
    // Unsplit: the training folder's classes alone, split at random.
    let unsplit = FolderConfig { valid_pct: Some(0.25), accept_missing_classes: true, ..cfg.clone() };
    // Flat: every image in one folder, its class in a CSV and in its name; the multi-label CSV gives each image its
    // class and, for every third, "odd" as well.
    let flat = root.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    let (mut single, mut multi) = (String::from("name,label\n"), String::from("name,tags\n"));
    for (i, file) in tiny_data::get_image_files(split.join("train")).unwrap().iter().enumerate() {
        let label = file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let label = if label == "er" { "checks".to_owned() } else { label };
        let name = format!("{label}_{i}.png");
        std::fs::copy(file, flat.join(&name)).unwrap();
        single += &format!("{name},{label}\n");
        multi += &format!("{name},{label}{}\n", if i % 3 == 0 { " odd" } else { "" });
    }
    std::fs::write(flat.join("single.csv"), single).unwrap();
    std::fs::write(flat.join("multi.csv"), multi).unwrap();
    let flat_cfg = FolderConfig { valid_pct: Some(0.25), accept_missing_classes: true, ..cfg.clone() };
    let multi_columns = CsvColumns { label: Column::from("tags"), label_delim: Some(' '), ..CsvColumns::default() };
    let layouts = [
        ("split folders, nested", ImageFolder::scan(&split, &cfg).unwrap(), cfg.clone()),
        ("linked folders", ImageFolder::scan(&linked, &cfg).unwrap(), cfg.clone()),
        ("unsplit", ImageFolder::scan(split.join("train"), &unsplit).unwrap(), unsplit.clone()),
        (
            "csv",
            ImageFolder::from_csv(&flat, "single.csv", &CsvColumns::default(), &flat_cfg).unwrap(),
            flat_cfg.clone(),
        ),
        ("csv multi", ImageFolder::from_csv(&flat, "multi.csv", &multi_columns, &flat_cfg).unwrap(), flat_cfg.clone()),
        ("names", ImageFolder::from_name_re(&flat, r"^(.+)_\d+\.png$", &flat_cfg).unwrap(), flat_cfg.clone()),
    ];
    for (name, folder, cfg) in layouts {
        let n = folder.splits.train.len() + folder.splits.valid.len();
        assert!(n >= 25, "{name}: {n} images");
        assert_eq!(folder.train_labels.is_multi_label(), name == "csv multi", "{name}");
        let loss = one_epoch(folder, &cfg);
        assert!(loss.is_finite(), "{name}: valid loss {loss}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

//! Multi-label classification (fastbook chapter 6) on synthetic images of two shapes each: labels from a CSV with a
//! label delimiter, binary cross entropy, `accuracy_multi`, per-class confusion, and predictions from an export.
//!
//! `cargo run --release -p tiny-learner --example multi_label` (the set is generated into `data/synth-shapes` on
//! first use; `--help` lists the options).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use tiny_data::synth::shapes::{self, ShapesConfig};
use tiny_data::{Column, CsvColumns, DataLoaders, FolderConfig, ImageFolder, Normalize};
use tiny_learner::metrics::{AccuracyMulti, F1ScoreMulti};
use tiny_learner::{ExportInfo, Learner, LrRange, MultiLabelInterpretation, Recorder, SetupLearner, load_learner};
use tiny_nn::{bce_with_logits_flat, simple_cnn};
use tiny_optim::Adam;
use tiny_tensor::Device;

/// The command line.
#[derive(Parser, Debug)]
#[command(about = "Multi-label training on synthetic two-shape images")]
struct Args {
    /// The data set: `labels.csv` (fname, labels, is_valid) and `images/`; generated when absent [default: the
    /// workspace's data/synth-shapes, from whatever folder it runs].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs of fastai's fit_one_cycle.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// The largest learning rate of the cycle (Adam).
    #[arg(long, default_value_t = 1e-2)]
    lr: f32,
    /// A class is predicted when its probability exceeds this.
    #[arg(long, default_value_t = 0.5)]
    thresh: f32,
    /// The seed of the weights, the split's shuffling and the fresh test images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Where to write the export (a temporary file by default).
    #[arg(long)]
    export: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tiny_tensor::set_num_threads(args.threads);
    tiny_nn::manual_seed(args.seed);
    let data =
        args.data.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/synth-shapes"));
    if !data.join("labels.csv").exists() {
        let set = shapes::generate(&data, &ShapesConfig::default())?;
        eprintln!("generated {} + {} images into {}", set.counts[0], set.counts[1], set.root.display());
    }
    // ImageDataLoaders.from_csv(path, folder='images', label_delim=' ', valid_col='is_valid')
    let columns = CsvColumns {
        label: Column::from("labels"),
        valid: Some(Column::from("is_valid")),
        folder: Some(PathBuf::from("images")),
        label_delim: Some(' '),
        ..CsvColumns::default()
    };
    let cfg = FolderConfig { bs: 64, seed: args.seed, ..FolderConfig::default() };
    let folder = ImageFolder::from_csv(&data, "labels.csv", &columns, &cfg)
        .with_context(|| format!("reading {}", data.display()))?;
    let dls = DataLoaders::from_image_folder(folder, &cfg)?;
    let vocab = dls.vocab.names().to_vec();
    println!("classes {vocab:?}, multi-label: {}", dls.multi_label());
    let xb = dls.train.iter_epoch(0).next().context("no training images")??;
    let norm = Normalize::from_batch(&xb)?;
    let info = ExportInfo::new("simple_cnn", &vocab, norm, tiny_data::ItemTransform::squash(cfg.size))
        .with_multi_label(args.thresh);
    // learn = vision_learner(dls, ..., loss_func=BCEWithLogitsLossFlat(), metrics=[accuracy_multi, F1ScoreMulti()])
    let setup = SetupLearner::normalize(Device::Cpu, norm.mean, norm.std);
    let mut learn = Learner::new(simple_cnn(vocab.len())?, dls, bce_with_logits_flat, args.lr, vec![Box::new(setup)])
        .with_opt_func(|ps, lr| Box::new(Adam::new(ps, lr)))
        .with_metrics(vec![Box::new(AccuracyMulti::new(args.thresh)), Box::new(F1ScoreMulti::new(args.thresh))])
        .with_seed(args.seed)
        .with_export_info(info);
    learn.add_cb(Box::new(Recorder::new()));
    learn.fit_one_cycle(args.epochs, LrRange::One(args.lr))?;

    let interp = MultiLabelInterpretation::from_learner(&mut learn)?;
    print!("{}", interp.confusion_table());
    let last = learn.state().history.last().context("no epoch ran")?;
    let (acc, f1) = (last.metric("accuracy_multi").unwrap_or(f32::NAN), last.metric("f1_score").unwrap_or(f32::NAN));

    // Export, load it back alone, and predict images it has never seen.
    let export = args.export.clone().unwrap_or_else(|| std::env::temp_dir().join("tiny-multi-label.safetensors"));
    learn.export(&export)?;
    let fresh = std::env::temp_dir().join(format!("tiny-shapes-fresh-{}", std::process::id()));
    let test = shapes::generate(
        &fresh,
        &ShapesConfig { train: 1, valid: 31, seed: args.seed + 1000, ..ShapesConfig::default() },
    )?;
    // Its files and their shapes' names, read as the training set was.
    let test = ImageFolder::from_csv(&test.root, "labels.csv", &columns, &cfg)?;
    let labels = |targets: &tiny_data::Targets| -> Vec<Vec<String>> {
        let name = |c: u32| test.vocab.names()[c as usize].clone();
        (0..targets.len()).map(|i| targets.label_set(i).into_iter().map(name).collect()).collect()
    };
    let truth = [labels(&test.train_labels), labels(&test.valid_labels)].concat();
    let files = [test.splits.train.clone(), test.splits.valid.clone()].concat();
    let mut loaded = load_learner(&export, Device::Cpu)?;
    let predictions = loaded.predict_all(&files)?;
    let exact = predictions.iter().zip(&truth).filter(|(p, t)| &p.labels == *t).count();
    let _ = std::fs::remove_dir_all(&fresh);
    for (file, (p, t)) in files.iter().zip(predictions.iter().zip(&truth)).take(4) {
        println!("{}: predicted {:?}, truth {t:?}", file.file_name().unwrap_or_default().to_string_lossy(), p.labels);
    }
    println!(
        "{{\"accuracy_multi\": {acc:.4}, \"f1_score\": {f1:.4}, \"fresh_exact\": {exact}, \"fresh\": {}, \"export\": \"{}\"}}",
        files.len(),
        export.display()
    );
    Ok(())
}

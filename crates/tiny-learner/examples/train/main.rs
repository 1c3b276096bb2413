//! The main job: the chapter's pipeline (loaders, Normalize, simple_cnn or resnet18, Learner) on a folder.
//!
//! ```text
//! cargo run --release -p tiny-learner --example train -- --epochs 5 --onecycle
//! ```
//!
//! Prints the chapter's line per training and validation phase and ends with one JSON line; `--help` lists
//! every flag.

mod args;
#[cfg(feature = "cuda")]
mod graph;
mod report;
mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use args::{Args, Model, Opt, Schedule, Stats};
use clap::Parser;
use report::{LrFindSummary, Summary};
use stop::{Interrupt, StopAfter};
use tiny_data::{BadFilePolicy, DataLoaders, Dataset, FolderConfig, ImageFolderDataset, ItemTransform, Normalize};
use tiny_learner::{
    AugTransforms, CheckpointInfo, CutMix, EarlyStopping, ExportInfo, FitOneCycle, GradientAccumulation, GradientClip,
    Learner, Loaders, LrFinder, LrRange, Mixup, Monitor, OneCycle, Recorder, SaveModel, SetupLearner, Splitter,
    TerminateOnNaN, TrackResults, Tta, head_split, metrics_from_names, resnet_split,
};
use tiny_nn::{Module, resnet18, simple_cnn};
use tiny_optim::{Adam, AdamW, Sgd};

const DEFAULT_DATA: &str = "data/imagenette2-160";
const SYNTH_DATA: &str = "data/synth-imagenette";

/// The data folder: `--data`, else Imagenette, else the synthetic set (generated on first use).
fn data_dir(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.data {
        if !d.is_dir() {
            bail!("--data {}: no such folder", d.display());
        }
        return Ok(d.clone());
    }
    if Path::new(DEFAULT_DATA).is_dir() {
        return Ok(DEFAULT_DATA.into());
    }
    eprintln!("{DEFAULT_DATA} is not here; get Imagenette with `cargo xtask fetch-data`.");
    eprintln!("Training on the synthetic Imagenette-shaped set in {SYNTH_DATA} instead.");
    if !Path::new(SYNTH_DATA).is_dir() {
        eprintln!("Generating it once (9,469 + 3,925 JPEGs, as `cargo xtask synth-data`)...");
        let s = tiny_data::synth::generate(Path::new(SYNTH_DATA), 1.0, 0)?;
        eprintln!("wrote {} train + {} val images", s.train, s.valid);
    }
    Ok(SYNTH_DATA.into())
}

/// Checks every output path, and the starting weights, before any data is read, so that a bad one fails at once.
fn check_paths(args: &Args) -> anyhow::Result<()> {
    let save = args.save.as_ref().map(|p| PathBuf::from(p.to_string_lossy().replace("{epoch}", "0")));
    let outputs = [&args.plot, &save, &args.save_best, &args.export].into_iter().flatten();
    for path in outputs.map(PathBuf::as_path).chain(args.lr_find.then_some(Path::new("lr_find.png"))) {
        tiny_learner::check_writable(path)?;
    }
    if let Some(dir) = &args.interpret {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--interpret {}: cannot create the folder", dir.display()))?;
        tiny_learner::check_writable(&dir.join("confusion_matrix.png"))?;
    }
    if let Some(init) = args.init()
        && !init.is_file()
    {
        let hint = if args.pretrained { "; get it with `cargo xtask fetch-weights resnet18`" } else { "" };
        bail!("{}: no such file{hint}", init.display());
    }
    Ok(())
}

/// The model, from `--init` when given (the body's weights under a fresh head of `n_classes`).
fn build_model(args: &Args, n_classes: usize) -> anyhow::Result<Box<dyn Module>> {
    let model: Box<dyn Module> = match args.model {
        Model::Resnet18 => Box::new(resnet18(n_classes)?),
        Model::SimpleCnn => Box::new(simple_cnn(n_classes)?),
    };
    if let Some(path) = args.init() {
        let report = tiny_nn::load_pretrained(model.as_ref(), &path, head_of(args.model))?;
        if !report.missing_keys.is_empty() {
            eprintln!(
                "{}: its head does not fit {n_classes} classes; {} start freshly initialised",
                path.display(),
                report.missing_keys.join(", ")
            );
        }
    }
    Ok(model)
}

/// The head's module path: simple_cnn's Linear is its sixth layer, resnet18's is torchvision's `fc`.
fn head_of(model: Model) -> &'static str {
    match model {
        Model::Resnet18 => "fc",
        Model::SimpleCnn => "5",
    }
}

/// fastai's splitter for the architecture: resnet18's three groups, or simple_cnn's body and head.
fn splitter(model: Model) -> Splitter {
    match model {
        Model::Resnet18 => Box::new(resnet_split),
        Model::SimpleCnn => head_split("5"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    check_paths(&args)?;
    // So is every metric name, which the error lists when one is unknown.
    let metrics = metrics_from_names(&args.metrics)?;
    tiny_tensor::set_num_threads(args.threads);
    tiny_nn::manual_seed(args.seed);
    let resume = args.resume.as_deref().map(CheckpointInfo::read).transpose()?;
    // On --resume the checkpoint wins for what the command line does not set: its seed always (so that shuffling
    // resumes), its learning rate, momentum and weight decay unless --lr, --momentum or --wd is given, in which
    // case the given value replaces the saved one in every group and a notice says so. The JSON line reports the
    // learning rate in force.
    let default_lr = if args.fine_tune.is_some() { 2e-3 } else { 0.1 };
    let lr = match (&resume, args.lr) {
        (_, Some(lr)) => lr,
        (Some(info), None) => info.lr,
        (None, None) => default_lr,
    };
    let seed = match &resume {
        Some(info) if info.seed != args.seed => {
            eprintln!("using the checkpoint's seed {} (not --seed {}) so shuffling resumes", info.seed, args.seed);
            info.seed
        }
        _ => args.seed,
    };

    let data = data_dir(&args)?;
    let mut cfg = FolderConfig {
        size: args.size,
        bs: args.bs,
        seed,
        augment: args.item_aug,
        cache: args.cache,
        cache_mb: args.cache_mb,
        ..FolderConfig::default()
    };
    if let Some(w) = args.workers {
        cfg.num_workers = w;
    }
    if args.skip_bad_files {
        cfg.on_bad_file = BadFilePolicy::Skip;
    }
    let dls = DataLoaders::from_folder(&data, &cfg).with_context(|| format!("reading {}", data.display()))?;
    let skipped = [dls.train.skipped(), dls.valid.skipped()];
    let v = dls.valid.dataset();
    let valid_ds = ImageFolderDataset::from_labelled(v.files().to_vec(), v.labels().to_vec(), *v.transform())?;
    let vocab = dls.vocab.names().to_vec();
    let (n_classes, n_train, n_valid) = (dls.vocab.len(), dls.train.dataset().len(), dls.valid.dataset().len());
    // The first training batch: the chapter's statistics come from it, and --interpret shows it.
    let first = match (args.stats(), &args.interpret) {
        (Stats::Fixed(_), None) => None,
        _ => Some(dls.train.iter_epoch(0).next().context("the training split holds no image")??),
    };
    let norm = match (args.stats(), &first) {
        (Stats::Fixed(norm), _) => norm,
        (Stats::Batch, Some(first)) => Normalize::from_batch(first)?,
        (Stats::Batch, None) => bail!("the training split holds no image"),
    };
    println!("classes {n_classes} train {n_train} valid {n_valid} stats mean {:?} std {:?}", norm.mean, norm.std);

    let model = build_model(&args, n_classes)?;
    let setup = SetupLearner::normalize(args.device, norm.mean, norm.std);
    let (momentum, wd, nesterov) = (args.momentum.unwrap_or(0.0), args.wd.unwrap_or(0.0), args.nesterov);
    let info = ExportInfo::new(args.model.name(), &vocab, norm, ItemTransform::squash(args.size));
    let mut learn = Learner::new(model, Loaders::from(dls), loss_func(&args)?, lr, vec![Box::new(setup)])
        .with_seed(seed)
        .with_precision(args.precision)
        .with_metrics(metrics)
        .with_export_info(info)
        .with_splitter(splitter(args.model));
    learn = match args.opt {
        Opt::Adam => learn.with_opt_func(move |ps, lr| Box::new(Adam::new(ps, lr).weight_decay(wd))),
        Opt::Adamw => learn.with_opt_func(move |ps, lr| Box::new(AdamW::new(ps, lr).weight_decay(wd))),
        Opt::Sgd => learn.with_opt_func(move |ps, lr| {
            Box::new(Sgd::new(ps, lr).momentum(momentum).nesterov(nesterov).weight_decay(wd))
        }),
    };

    if args.lr_find {
        return lr_find(&mut learn);
    }

    learn.add_cb(Box::new(TrackResults::new()));
    learn.add_cb(Box::new(Recorder::new().show_table(false)));
    // A diverged fit stops with an error (and a non-zero exit) before any checkpoint of it is written.
    learn.add_cb(Box::new(TerminateOnNaN::new()));
    match args.schedule() {
        Some(Schedule::Chapter) if args.fine_tune.is_none() => {
            let mut oc = OneCycle::new(lr);
            if args.cosine {
                oc = oc.cosine();
            }
            if momentum > 0.0 || args.opt != Opt::Sgd {
                oc = oc.cycle_momentum();
            }
            learn.add_cb(Box::new(oc));
        }
        Some(Schedule::Fastai) if args.fine_tune.is_none() => {
            learn.add_cb(Box::new(FitOneCycle::new(LrRange::One(lr))))
        }
        Some(_) => eprintln!("--fine-tune brings fastai's schedules; the schedule flag is left out"),
        None => {}
    }
    if let Some(alpha) = args.mixup {
        let mixup = Mixup::new(alpha)?;
        // Mixup mixes per-item losses; with label smoothing they are the smoothed ones.
        let mixup = match args.label_smoothing {
            Some(eps) => mixup.with_item_loss(tiny_nn::LabelSmoothingCrossEntropy::new(eps)?.items_func()),
            None => mixup,
        };
        learn.add_cb(Box::new(mixup));
    }
    if args.aug {
        learn.add_cb(Box::new(AugTransforms::new(norm)));
    }
    if let Some(alpha) = args.cutmix {
        learn.add_cb(Box::new(CutMix::new(alpha)?));
    }
    if let Some(n) = args.accum {
        learn.add_cb(Box::new(GradientAccumulation::new(n)?));
    }
    if let Some(norm) = args.grad_clip {
        learn.add_cb(Box::new(GradientClip::new(norm)));
    }
    if let Some(patience) = args.early_stop {
        learn.add_cb(Box::new(EarlyStopping::new(Monitor::ValidLoss, patience)));
    }
    if let Some(path) = &args.save {
        learn.add_cb(Box::new(SaveModel::every_epoch(path)));
    }
    if let Some(path) = &args.save_best {
        learn.add_cb(Box::new(SaveModel::best(path, Monitor::ValidLoss)));
    }
    if let Some(n) = args.stop_after {
        learn.add_cb(Box::new(StopAfter(n)));
    }
    #[cfg(feature = "cuda")]
    if args.cuda_graph {
        learn.add_cb(Box::new(graph::GraphStep::new(args.device)));
    }
    let start = match &args.resume {
        Some(path) => {
            let info = learn.load_checkpoint(path)?;
            let overrides = tiny_learner::Overrides { lr: args.lr, momentum: args.momentum, weight_decay: args.wd };
            for (name, saved, used) in learn.override_hyper(overrides) {
                eprintln!("using --{name} {used}, not the checkpoint's {saved}");
            }
            if info.n_epochs != args.epochs {
                eprintln!(
                    "the checkpoint was written by a {}-epoch fit; schedules now span {}",
                    info.n_epochs, args.epochs
                );
            }
            eprintln!("resuming at epoch {} of {}", info.next_epoch, args.epochs);
            info.next_epoch
        }
        None => 0,
    };

    learn.add_cb(Box::new(Interrupt::install()?));
    let t0 = Instant::now();
    let outcome = match args.fine_tune {
        Some(epochs) => learn.fine_tune(epochs, lr, args.freeze_epochs),
        None => learn.fit_from(args.epochs, start),
    };
    outcome.map_err(|e| match &e {
        tiny_learner::LearnerError::Data(d) if d.is_bad_file() => {
            anyhow::Error::new(e).context("a bad image stopped the fit; --skip-bad-files leaves such files out")
        }
        _ => e.into(),
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    let skipped: Vec<PathBuf> = skipped.iter().flat_map(|s| s.files()).collect();
    if !skipped.is_empty() {
        let shown: Vec<String> = skipped.iter().take(5).map(|p| p.display().to_string()).collect();
        let more = skipped.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        eprintln!("skipped {} unreadable files: {}{more}", skipped.len(), shown.join(", "));
    }
    if let Some((epoch, training, iter, n_iter)) = learn.callback::<Interrupt>().and_then(|i| i.at) {
        let phase = if training { "training" } else { "validation" };
        let saved = learn.callback::<SaveModel>().and_then(|s| s.saved.last().cloned());
        let last = match saved.or_else(|| args.resume.clone()) {
            Some(path) => format!("the last checkpoint written is {0}; continue with --resume {0}", path.display()),
            None if args.save.is_some() => "no checkpoint was written yet".to_owned(),
            None => "nothing was saved (pass --save PATH to keep checkpoints)".to_owned(),
        };
        eprintln!("interrupted in epoch {epoch} of {}, {phase} batch {} of {n_iter}; {last}", args.epochs, iter + 1);
        std::process::exit(130);
    }

    if let Some(path) = &args.plot {
        learn.callback::<Recorder>().context("the Recorder is gone")?.plot_loss(path)?;
    }
    if let Some(path) = &args.export {
        learn.export(path)?;
        eprintln!("exported the model to {0}; predict with `--example predict -- {0} IMAGE...`", path.display());
    }
    if let (Some(dir), Some(first)) = (&args.interpret, first) {
        report::interpret(&mut learn, &valid_ds, first, dir)?;
        eprintln!("wrote the interpretation views to {}", dir.display());
    }
    let tta_acc = if args.tta { Some(learn.tta(&valid_ds, Tta::default())?.accuracy()?) } else { None };
    // A fit of no epochs validates the starting weights, as fastai's `learn.validate()`.
    let validated = if args.epochs == 0 && args.fine_tune.is_none() { Some(learn.validate()?) } else { None };
    let track = learn.callback::<TrackResults>().context("the TrackResults callback is gone")?;
    let valid = validated.as_ref().or(track.last_valid());
    let train = track.last_train();
    let (train_n, train_secs, train_wait) = track
        .history
        .iter()
        .filter(|r| r.train)
        .fold((0usize, 0f64, 0f64), |(n, s, w), r| (n + r.n, s + r.secs, w + r.data_wait_secs));
    #[cfg(feature = "cuda")]
    let graph_steps = learn.callback::<graph::GraphStep>().map_or(0, |g| g.replayed);
    #[cfg(not(feature = "cuda"))]
    let graph_steps = 0;
    let summary = Summary {
        mode: "train",
        data: data.display().to_string(),
        model: args.model.name(),
        opt: format!("{:?}", args.opt).to_lowercase(),
        device: args.device.to_string(),
        precision: (args.precision != tiny_tensor::Precision::Fp32).then(|| args.precision.to_string()),
        cuda_graph: args.cuda_graph,
        graph_steps,
        epochs: args.fine_tune.map_or(args.epochs, |n| n + args.freeze_epochs),
        start_epoch: start,
        lr,
        onecycle: args.schedule() == Some(Schedule::Chapter),
        schedule: args.schedule().map(|s| format!("{s:?}").to_lowercase()),
        fine_tune: args.fine_tune,
        bs: args.bs,
        size: args.size,
        seed,
        init: args.init(),
        stats_mean: norm.mean,
        stats_std: norm.std,
        threads: tiny_tensor::num_threads(),
        n_train,
        n_valid,
        train_loss: train.map(|r| r.loss),
        valid_loss: valid.map(|r| r.loss),
        valid_acc: valid.map(|r| r.acc),
        metrics: valid.map(|r| r.metrics.iter().cloned().collect()).unwrap_or_else(BTreeMap::new),
        tta_acc,
        seconds,
        train_img_per_s: train_n as f64 / train_secs.max(1e-9),
        train_data_wait_s: train_wait,
        train_data_wait_pct: 100.0 * train_wait / train_secs.max(1e-9),
        epoch_data_wait_pct: track
            .history
            .iter()
            .filter(|r| r.train)
            .map(|r| 100.0 * r.data_wait_secs / r.secs.max(1e-9))
            .collect(),
        skipped_files: skipped.len(),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// The loss: the chapter's cross entropy, or with `--label-smoothing` fastai's `LabelSmoothingCrossEntropy`.
fn loss_func(args: &Args) -> anyhow::Result<tiny_learner::LossFn> {
    Ok(match args.label_smoothing {
        Some(eps) => Box::new(tiny_nn::LabelSmoothingCrossEntropy::new(eps)?.loss_func()),
        None => Box::new(tiny_nn::cross_entropy),
    })
}

/// Runs the LR finder, writes lr_find.png, and prints the suggestion and a JSON line.
fn lr_find(learn: &mut Learner) -> anyhow::Result<()> {
    let res = learn.lr_find(LrFinder::new())?;
    res.plot(Path::new("lr_find.png"))?;
    if let Some(warning) = res.warning() {
        eprintln!("warning: {warning}");
    }
    let each: Vec<String> = res.suggestions.iter().map(|(m, lr)| format!("{} {lr:.2e}", m.name())).collect();
    println!(
        "lr_find: {} steps, stopped: {}; suggested lr {:.2e} (valley; {}); plot in lr_find.png",
        res.lrs.len(),
        res.stop.map_or("out of epochs".to_string(), |s| format!("{s:?}")),
        res.suggestion.unwrap_or(f32::NAN),
        each.join(", ")
    );
    let summary = LrFindSummary {
        mode: "lr_find",
        suggested_lr: res.suggestion,
        suggestions: res.suggestions.iter().map(|(m, lr)| (m.name().to_owned(), *lr)).collect(),
        steps: res.lrs.len(),
        min_lr: res.lrs.first().copied(),
        max_lr: res.lrs.last().copied(),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

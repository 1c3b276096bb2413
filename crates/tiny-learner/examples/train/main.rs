//! The main job: the chapter's pipeline (loaders, Normalize, simple_cnn or resnet18, Learner) on a folder.
//!
//! ```text
//! cargo run --release -p tiny-learner --example train -- --epochs 5 --onecycle
//! ```
//!
//! Prints the chapter's line per training and validation phase and ends with one JSON line; `--help` lists
//! every flag. `recipe.rs` turns the flags into a learner and its callbacks, `report.rs` writes what comes after.

mod args;
mod lock;
mod recipe;
mod report;
mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use args::{Args, Stats};
use clap::Parser;
use report::{After, LrFindSummary, Run};
use stop::Interrupt;
use tiny_data::{
    BadFilePolicy, Column, CsvColumns, DataLoaders, Dataset, FolderConfig, ImageDataLoaders, ImageFolder, LeftOut,
    Normalize,
};
use tiny_learner::{CheckpointInfo, JsonSummary, Learner, LrFinder, Recorder, Tta, metrics_from_names, print_progress};

const DEFAULT_DATA: &str = "data/imagenette2-160";
const SYNTH_DATA: &str = "data/synth-imagenette";

/// `rel` (such as `data/synth-imagenette`) in the workspace this example was built in, wherever it is run from, so
/// that a run from another folder reads the workspace's data and never writes a data set into the current folder;
/// as given when the current folder is the workspace.
pub fn in_workspace(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let here = std::env::current_dir().and_then(|d| d.canonicalize()).ok();
    match root.canonicalize() {
        Ok(root) if here.as_ref() != Some(&root) => root.join(rel),
        _ => PathBuf::from(rel),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    check_paths(&args)?;
    // Held until main returns: a second run on the same --save is refused instead of overwriting these epochs.
    let _lock = args.save.as_deref().map(lock::SaveLock::take).transpose()?;
    // So is every metric name, which the error lists when one is unknown.
    let metrics = metrics_from_names(&args.metric_names()?)?;
    tiny_tensor::set_num_threads(args.threads);
    tiny_nn::manual_seed(args.seed);
    let resume = args.resume.as_deref().map(CheckpointInfo::read).transpose()?;
    let (lr, seed) = recipe::lr_and_seed(&args, resume.as_ref());
    let data = data_dir(&args)?;
    let (dls, left_out) = loaders(&args, &data, seed)?;
    // A batch that cannot fit is refused here, naming --bs and --size, before the first one is loaded (an allocation
    // that fails aborts the process, and the kernel's out-of-memory killer gives no message at all).
    let fresh = args.model.build_with(dls.vocab.len().max(1), args.head)?;
    tiny_learner::memory::check_training_memory(fresh.as_ref(), args.size, args.bs)?;
    check_space(&args, fresh.as_ref())?;
    drop(fresh);
    // Building that model drew from the seeded generator: seed it again, so that --seed gives the weights it gave
    // before the check existed.
    tiny_nn::manual_seed(args.seed);
    probe_validation(&args, &dls)?;
    let skipped = [dls.train.skipped(), dls.valid.skipped()];
    let counts = [dls.train.dataset().len(), dls.valid.dataset().len()];
    // The first training batch: the chapter's statistics come from it, and --interpret shows it.
    let (stats, stats_from) = args.stats(resume.as_ref())?;
    let first = match (stats, &args.interpret) {
        (Stats::Fixed(_), None) => None,
        _ => Some(dls.train.iter_epoch(0).next().context("the training split holds no image")??),
    };
    let norm = match (stats, &first) {
        (Stats::Fixed(norm), _) => norm,
        (Stats::Batch, Some(first)) => Normalize::from_batch(first)?,
        (Stats::Batch, None) => bail!("the training split holds no image"),
    };
    let (n_classes, [n_train, n_valid]) = (dls.vocab.len(), counts);
    print_progress(&format!(
        "classes {n_classes} train {n_train} valid {n_valid} stats mean {:?} std {:?}",
        norm.mean, norm.std
    ));

    let mut learn = recipe::learner(&args, dls, norm, lr, seed, metrics)?;
    if args.lr_find {
        return lr_find(&mut learn);
    }
    recipe::add_callbacks(&mut learn, &args, lr, norm)?;
    let start = recipe::resume(&mut learn, &args)?;
    if args.summary {
        write_out(&learn.summary()?, "the summary")?;
    }
    learn.add_cb(Box::new(JsonSummary::new(Run::new(&args, &data, lr, seed, start, (norm, stats_from), counts))));
    learn.add_cb(Box::new(Interrupt::install()?));
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
    // With --ema the model takes the average (the best epoch's, with --save-best), which validation measured.
    if args.ema.is_some() {
        tiny_learner::Ema::load_average(learn.state())?;
    }
    let skipped: Vec<PathBuf> = skipped.iter().flat_map(|s| s.files()).collect();
    report::skipped_files(&skipped);
    if let Some(at) = learn.callback::<Interrupt>().and_then(|i| i.at) {
        report::interrupted(&learn, &args, at);
    }
    after_fit(&mut learn, &args, first, skipped.len(), left_out.counts())
}

/// What comes after the fit: the loss plot, the export, the interpretation views, TTA, `validate` for a fit of no
/// epochs (as fastai's `learn.validate()`), and the JSON line.
fn after_fit(
    learn: &mut Learner,
    args: &Args,
    first: Option<tiny_data::Batch>,
    skipped: usize,
    left_out: BTreeMap<&'static str, usize>,
) -> anyhow::Result<()> {
    if let Some(path) = &args.plot {
        learn.callback::<Recorder>().context("the Recorder is gone")?.plot_loss(path)?;
    }
    if let Some(path) = &args.export {
        // A failed write (a full disk, say) still leaves the trained model somewhere, named in the error.
        let (saved, failed) = learn.export_or_fallback(path, &std::env::temp_dir())?;
        if let Some(e) = failed {
            bail!("--export {}: {e}; the trained model was saved to {} instead", path.display(), saved.display());
        }
        eprintln!("exported the model to {0}; predict with `--example predict -- {0} IMAGE...`", path.display());
    }
    if let (Some(dir), Some(first)) = (&args.interpret, first) {
        report::interpret(learn, first, dir)?;
        eprintln!("wrote the interpretation views to {}", dir.display());
    }
    if args.tensorboard.is_some() {
        report::confusion_to_tensorboard(learn)?;
    }
    // For multi-label data, accuracy_multi at --thresh, as the fit measured it.
    let tta_acc = match args.tta.then(|| learn.tta(Tta::default())).transpose()? {
        Some(preds) if args.label_delim.is_some() => Some(preds.accuracy_multi(args.thresh)?),
        Some(preds) => Some(preds.accuracy()?),
        None => None,
    };
    if args.epochs == 0 && args.fine_tune.is_none() {
        learn.validate()?;
    }
    #[cfg(feature = "cuda")]
    let graph_steps = learn.callback::<tiny_learner::GraphStep>().map_or(0, |g| g.replayed);
    #[cfg(not(feature = "cuda"))]
    let graph_steps = 0;
    let summary = learn.callback::<JsonSummary<Run>>().context("the JsonSummary callback is gone")?;
    let line = summary.line(learn, After { graph_steps, tta_acc, skipped_files: skipped, left_out })?;
    result_line(&line)
}

/// The data folder: `--data`, else Imagenette, else the synthetic set (generated on first use).
fn data_dir(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.data {
        if !d.is_dir() {
            bail!("--data {}: no such folder", d.display());
        }
        return Ok(d.clone());
    }
    let (imagenette, synth) = (in_workspace(DEFAULT_DATA), in_workspace(SYNTH_DATA));
    if imagenette.is_dir() {
        return Ok(imagenette);
    }
    eprintln!("{} is not here; get Imagenette with `cargo xtask fetch-data`.", imagenette.display());
    eprintln!("Training on the synthetic Imagenette-shaped set in {} instead.", synth.display());
    if !synth.is_dir() {
        eprintln!("Generating it once (9,469 + 3,925 JPEGs, as `cargo xtask synth-data`)...");
        let s = tiny_data::synth::generate(&synth, 1.0, 0)?;
        eprintln!("wrote {} train + {} val images", s.train, s.valid);
    }
    Ok(synth)
}

/// Checks that each file the run will write has room: an export holds the model's tensors, a checkpoint those, the
/// optimizer's state (at most two more of each parameter, Adam's moments) and with `--ema` the average. A `--save`
/// path with `{epoch}` is checked for its first file only: a fit may stop long before its last epoch.
fn check_space(args: &Args, model: &dyn tiny_nn::Module) -> anyhow::Result<()> {
    let bytes: u64 = model.state_dict().iter().map(|(_, t)| 4 * t.numel() as u64).sum();
    let checkpoint = if args.ema.is_some() { 4 } else { 3 };
    let save = args.save.as_ref().map(|p| PathBuf::from(p.to_string_lossy().replace("{epoch}", "0")));
    for (path, copies) in [(&args.export, 1), (&save, checkpoint), (&args.save_best, checkpoint)] {
        if let Some(path) = path {
            tiny_learner::check_space(path, copies * bytes)?;
        }
    }
    Ok(())
}

/// Checks every output path, and the starting weights, before any data is read, so that a bad one fails at once.
fn check_paths(args: &Args) -> anyhow::Result<()> {
    let save = args.save.as_ref().map(|p| PathBuf::from(p.to_string_lossy().replace("{epoch}", "0")));
    let named =
        [("--plot", &args.plot), ("--save", &save), ("--save-best", &args.save_best), ("--export", &args.export)];
    let named: Vec<(&str, &PathBuf)> =
        named.into_iter().chain([("--csv", &args.csv)]).filter_map(|(f, p)| Some((f, p.as_ref()?))).collect();
    // Two outputs at one path would overwrite each other: the export would replace the checkpoint, say.
    for (i, (flag, path)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..i].iter().find(|(_, p)| p == path) {
            bail!("{other} and {flag} both name {}; the later file would replace the earlier", path.display());
        }
    }
    for path in named.iter().map(|(_, p)| p.as_path()).chain(args.lr_find.then_some(Path::new("lr_find.png"))) {
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
        let hint = if args.pretrained {
            format!("; get it with `cargo xtask fetch-weights {}`", args.model.name)
        } else {
            String::new()
        };
        bail!("{}: no such file{hint}", init.display());
    }
    Ok(())
}

/// The chapter's loaders of the data folder (labelled by its class folders, a CSV or a pattern on file names), with
/// the flags' size, batch size, workers, caching and split, and what the folder walk left out. The folder's warnings (one class, fewer images than a batch, a class in one split only)
/// are printed here, before any work.
fn loaders(args: &Args, data: &Path, seed: u64) -> anyhow::Result<(ImageDataLoaders, LeftOut)> {
    let mut cfg = FolderConfig {
        size: args.size,
        bs: args.bs,
        seed,
        augment: args.item_aug,
        cache: args.cache,
        cache_mb: args.cache_mb,
        valid_pct: args.valid_pct,
        accept_missing_classes: args.accept_missing_classes,
        ..FolderConfig::default()
    };
    if let Some(w) = args.workers {
        cfg.num_workers = w;
    }
    if args.skip_bad_files {
        cfg.on_bad_file = BadFilePolicy::Skip;
    }
    let mut folder = match (&args.labels_csv, &args.label_re) {
        (Some(csv), _) => {
            let columns = CsvColumns {
                file: Column::from(args.fn_col.as_str()),
                label: Column::from(args.label_col.as_str()),
                valid: args.valid_col.as_deref().map(Column::from),
                folder: args.folder.clone(),
                suffix: args.suffix.clone(),
                label_delim: args.label_delim,
            };
            ImageFolder::from_csv(data, csv, &columns, &cfg)
        }
        (None, Some(pattern)) => ImageFolder::from_name_re(data, pattern, &cfg),
        (None, None) => ImageFolder::scan(data, &cfg),
    }
    .with_context(|| format!("reading {}", data.display()))?;
    for warning in &folder.warnings {
        eprintln!("warning: {}: {warning}", data.display());
    }
    let left_out = std::mem::take(&mut folder.left_out);
    report::left_out(&left_out);
    let dls = DataLoaders::from_image_folder(folder, &cfg).with_context(|| format!("reading {}", data.display()))?;
    Ok((dls, left_out))
}

/// Reads every validation image's header before the fit, so that a bad one stops the run now rather than after the
/// first epoch's training; with --skip-bad-files the loader leaves such files out instead.
fn probe_validation(args: &Args, dls: &ImageDataLoaders) -> anyhow::Result<()> {
    if args.skip_bad_files {
        return Ok(());
    }
    for file in dls.valid.dataset().files() {
        tiny_data::probe_image(file)
            .context("a bad validation image, found before the fit; --skip-bad-files leaves such files out")?;
    }
    Ok(())
}

/// Runs the LR finder, writes lr_find.png, and prints the suggestion and a JSON line.
fn lr_find(learn: &mut Learner) -> anyhow::Result<()> {
    let res = learn.lr_find(LrFinder::new())?;
    res.plot(Path::new("lr_find.png"))?;
    if let Some(warning) = res.warning() {
        eprintln!("warning: {warning}");
    }
    let each: Vec<String> = res.suggestions.iter().map(|(m, lr)| format!("{} {lr:.2e}", m.name())).collect();
    print_progress(&format!(
        "lr_find: {} steps, stopped: {}; suggested lr {:.2e} (valley; {}); plot in lr_find.png",
        res.lrs.len(),
        res.stop.map_or("out of epochs".to_string(), |s| s.to_string()),
        res.suggestion.unwrap_or(f32::NAN),
        each.join(", ")
    ));
    let summary = LrFindSummary {
        mode: "lr_find",
        suggested_lr: res.suggestion,
        suggestions: res.suggestions.iter().map(|(m, lr)| (m.name().to_owned(), *lr)).collect(),
        steps: res.lrs.len(),
        min_lr: res.lrs.first().copied(),
        max_lr: res.lrs.last().copied(),
    };
    result_line(&serde_json::to_string(&summary)?)
}

/// Writes the run's result, its JSON line, on standard output; a closed or full standard output is an error that
/// says so (after the work and its files are done), not a panic.
fn result_line(line: &str) -> anyhow::Result<()> {
    write_out(&format!("{line}\n"), "the JSON line")
}

/// Writes `text` on standard output; a closed or full standard output is an error naming `what`, not a panic.
fn write_out(text: &str, what: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .with_context(|| format!("writing {what} to standard output"))
}

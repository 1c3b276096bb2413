//! The main job: the chapter's pipeline (loaders, Normalize, simple_cnn or resnet18, Learner) on a folder.
//!
//! ```text
//! cargo run --release -p tiny-learner --example train -- --epochs 5 --onecycle
//! ```
//!
//! Prints the chapter's line per training and validation phase and ends with one JSON line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use tiny_data::{BadFilePolicy, DataLoaders, Dataset, FolderConfig, ImageFolderDataset, ItemTransform, Normalize};
use tiny_learner::{
    Callback, Cancel, CbResult, CheckpointInfo, ClassificationInterpretation, ExportInfo, Learner, LearnerState,
    Loaders, LrFinder, Mixup, OneCycle, Recorder, SaveModel, SetupLearner, TerminateOnNaN, TrackResults, Tta,
    metrics_from_names,
};
use tiny_nn::{Module, cross_entropy, resnet18, simple_cnn};
use tiny_optim::{Adam, Sgd};
use tiny_tensor::Device;

const DEFAULT_DATA: &str = "data/imagenette2-160";
const SYNTH_DATA: &str = "data/synth-imagenette";

const USAGE: &str = "usage: train [options]
  --data DIR          image folders train/<class>/*, val/<class>/* (default data/imagenette2-160,
                      or a synthetic Imagenette-shaped set generated into data/synth-imagenette)
  --model NAME        simple_cnn (default) or resnet18
  --size N            image side in pixels (default 64)
  --bs N              training batch size; validation uses twice it (default 128)
  --epochs N          epochs (default 5); 0 only validates the starting weights, as fastai's learn.validate()
  --lr F              learning rate, the peak one with --onecycle (default 0.1)
  --onecycle          the chapter's one-cycle schedule (warm-up 25% from lr/10, then down to 0)
  --cosine            cosine instead of linear one-cycle stretches (implies --onecycle)
  --opt NAME          sgd (default) or adam
  --momentum F        SGD momentum (default 0); with --onecycle, momentum (or Adam's beta1) cycles
                      0.95 -> 0.85 -> 0.95 when it is set or the optimizer is adam
  --wd F              weight decay (default 0)
  --mixup A           Mixup with Beta(A, A) (default off)
  --lr-find           run the LR finder, write lr_find.png, print the suggestion, and stop
  --workers N         loader worker threads (default: the number of cores)
  --threads N         tiny-tensor compute threads (default 0: all cores)
  --device D          cpu (default) or cuda
  --seed N            seed of initialisation, shuffling and Mixup (default 42)
  --init FILE         start from a PyTorch state_dict saved as safetensors (PyTorch's names and shapes:
                      0.w ... 5.b for simple_cnn, torchvision's for resnet18); a head of another size
                      is left out and freshly initialised, as fastai does with a pretrained body
  --stats S           normalisation statistics: batch (default: the first training batch's, as the
                      chapter), imagenet (fixed, as a pretrained model needs), or m1,m2,m3,s1,s2,s3
  --save PATH         checkpoint after every epoch ({epoch} in PATH becomes the epoch number)
  --resume PATH       continue from a checkpoint up to --epochs
  --stop-after N      end the fit after N epochs of the --epochs schedule, as an interruption would
                      (with --save, then --resume, to split one fit over two processes)
  --plot PATH         write the loss curves as a PNG at the end
  --metrics LIST      validation metrics, comma-separated (default accuracy): accuracy, error_rate,
                      top_k:K, f1, precision, recall (macro averages)
  --export PATH       after the fit, write the model with its classes, statistics and item transform,
                      for `--example predict` and load_learner
  --interpret DIR     after the fit, write fastai's interpretation views into DIR: confusion_matrix.png
                      and .txt, most_confused.txt, top_losses.png, show_batch.png, loss.png, and
                      preds.csv (every validation file's target, prediction, probability and loss)
  --tta               after the fit, also measure test-time augmentation's accuracy (tta_acc)
  --skip-bad-files    leave unreadable or undecodable images out of their batch (counted in the JSON
                      line as skipped_files) instead of stopping at the first one

Ctrl-C stops the fit at the end of the current batch and says where it stopped and which checkpoint
is the last one written; a second Ctrl-C exits at once.";

/// The command line.
#[derive(Debug)]
struct Args {
    data: Option<PathBuf>,
    model: String,
    size: u32,
    bs: usize,
    epochs: usize,
    lr: f32,
    onecycle: bool,
    cosine: bool,
    opt: String,
    momentum: f32,
    wd: f32,
    mixup: Option<f32>,
    lr_find: bool,
    workers: Option<usize>,
    threads: usize,
    device: Device,
    seed: u64,
    save: Option<PathBuf>,
    resume: Option<PathBuf>,
    stop_after: Option<usize>,
    plot: Option<PathBuf>,
    init: Option<PathBuf>,
    stats: Stats,
    skip_bad_files: bool,
    metrics: String,
    export: Option<PathBuf>,
    tta: bool,
    interpret: Option<PathBuf>,
    /// Which hyper-parameters the command line set, for `--resume` (see `main`).
    given: Given,
}

/// The hyper-parameters given on the command line rather than left at their defaults.
#[derive(Debug, Default)]
struct Given {
    lr: bool,
    momentum: bool,
    wd: bool,
}

/// Where the normalisation statistics come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stats {
    /// The mean and std of the first training batch, as the chapter computes them.
    Batch,
    /// Fixed per-channel means and standard deviations.
    Fixed(Normalize),
}

/// ImageNet's channel statistics, fastai's `imagenet_stats`.
const IMAGENET: Normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// Parses `--stats`: `batch`, `imagenet`, or six comma-separated numbers (three means, three stds).
fn parse_stats(v: &str) -> anyhow::Result<Stats> {
    match v {
        "batch" => return Ok(Stats::Batch),
        "imagenet" => return Ok(Stats::Fixed(IMAGENET)),
        _ => {}
    }
    let nums: Vec<f32> = v
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--stats {v}: expected batch, imagenet or m1,m2,m3,s1,s2,s3"))?;
    if nums.len() != 6 || nums[3..].iter().any(|s| !(s.is_finite() && *s > 0.0)) || nums.iter().any(|x| !x.is_finite())
    {
        bail!("--stats {v}: expected three means and three positive standard deviations");
    }
    Ok(Stats::Fixed(Normalize { mean: [nums[0], nums[1], nums[2]], std: [nums[3], nums[4], nums[5]] }))
}

/// Parses `std::env::args`; `None` means `--help` was asked for.
fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut a = Args {
        data: None,
        model: "simple_cnn".into(),
        size: 64,
        bs: 128,
        epochs: 5,
        lr: 0.1,
        onecycle: false,
        cosine: false,
        opt: "sgd".into(),
        momentum: 0.0,
        wd: 0.0,
        mixup: None,
        lr_find: false,
        workers: None,
        threads: 0,
        device: Device::Cpu,
        seed: 42,
        save: None,
        resume: None,
        stop_after: None,
        plot: None,
        init: None,
        stats: Stats::Batch,
        skip_bad_files: false,
        metrics: "accuracy".into(),
        export: None,
        tta: false,
        interpret: None,
        given: Given::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> anyhow::Result<T> {
            v.parse().map_err(|_| anyhow::anyhow!("{flag} {v}: not a valid number"))
        }
        match flag.as_str() {
            "--data" => a.data = Some(value()?.into()),
            "--model" => a.model = value()?,
            "--size" => a.size = num(&flag, value()?)?,
            "--bs" => a.bs = num(&flag, value()?)?,
            "--epochs" => a.epochs = num(&flag, value()?)?,
            "--lr" => (a.lr, a.given.lr) = (num(&flag, value()?)?, true),
            "--onecycle" => a.onecycle = true,
            "--cosine" => (a.onecycle, a.cosine) = (true, true),
            "--opt" => a.opt = value()?,
            "--momentum" => (a.momentum, a.given.momentum) = (num(&flag, value()?)?, true),
            "--wd" => (a.wd, a.given.wd) = (num(&flag, value()?)?, true),
            "--mixup" => a.mixup = Some(num(&flag, value()?)?),
            "--lr-find" => a.lr_find = true,
            "--workers" => a.workers = Some(num(&flag, value()?)?),
            "--threads" => a.threads = num(&flag, value()?)?,
            "--device" => a.device = value()?.parse()?,
            "--seed" => a.seed = num(&flag, value()?)?,
            "--save" => a.save = Some(value()?.into()),
            "--resume" => a.resume = Some(value()?.into()),
            "--stop-after" => a.stop_after = Some(num(&flag, value()?)?),
            "--plot" => a.plot = Some(value()?.into()),
            "--init" => a.init = Some(value()?.into()),
            "--stats" => a.stats = parse_stats(&value()?)?,
            "--skip-bad-files" => a.skip_bad_files = true,
            "--metrics" => a.metrics = value()?,
            "--export" => a.export = Some(value()?.into()),
            "--tta" => a.tta = true,
            "--interpret" => a.interpret = Some(value()?.into()),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if !["simple_cnn", "resnet18"].contains(&a.model.as_str()) {
        bail!("--model {}: expected simple_cnn or resnet18", a.model);
    }
    if !["sgd", "adam"].contains(&a.opt.as_str()) {
        bail!("--opt {}: expected sgd or adam", a.opt);
    }
    if a.bs == 0 || a.size == 0 {
        bail!("--bs and --size must be at least 1");
    }
    // Values that run but are most likely a mistake get a word, not silence.
    if a.model == "resnet18" && a.size < 32 {
        eprintln!(
            "warning: --size {} with resnet18: its stride-32 body sees less than one pixel; 64 or more is usual",
            a.size
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.threads > cores || a.workers.is_some_and(|w| w > 4 * cores) {
        eprintln!("warning: more threads than this machine's {cores} cores slow the run down");
    }
    Ok(Some(a))
}

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

/// Cancels the fit once `0` epochs are done, after the checkpoint of the last one is written.
struct StopAfter(usize);

impl Callback for StopAfter {
    fn order(&self) -> i32 {
        100
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.epoch + 1 >= self.0 { Err(Cancel::Fit.into()) } else { Ok(()) }
    }
}

/// Where the fit was when Ctrl-C stopped it: the epoch, whether it was training, the batch and the batch count.
type StoppedAt = (usize, bool, usize, usize);

/// Ends the fit at the end of the batch during which Ctrl-C was pressed, and records where that was.
struct Interrupt {
    pressed: Arc<AtomicBool>,
    at: Option<StoppedAt>,
}

impl Callback for Interrupt {
    fn order(&self) -> i32 {
        // Before the other callbacks' after_batch, so that none of them records a batch of a fit being stopped.
        -100
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !self.pressed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.at = Some((learn.epoch, learn.training, learn.iter, learn.n_iter));
        Err(Cancel::Fit.into())
    }
}

/// Catches Ctrl-C: the first press asks the fit to stop after its batch, a second one exits at once.
fn catch_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let pressed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&pressed);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping at the end of this batch (Ctrl-C again exits at once)");
    })
    .context("could not install the Ctrl-C handler")?;
    Ok(pressed)
}

/// Writes fastai's interpretation views of the trained `learn` over the validation set `valid` into `dir`.
fn interpret(
    learn: &mut Learner,
    valid: &ImageFolderDataset,
    first: tiny_data::Batch,
    dir: &Path,
) -> anyhow::Result<()> {
    let vocab = learn.state().export_info.as_ref().map(|i| i.vocab.clone()).unwrap_or_default();
    let batch = tiny_learner::Batch { x: first.x, y: first.y };
    tiny_learner::show_batch(&batch, &vocab, &dir.join("show_batch.png"), 16)?;
    learn.callback::<Recorder>().context("the Recorder is gone")?.plot_loss(&dir.join("loss.png"))?;
    let interp = ClassificationInterpretation::from_learner(learn, valid)?;
    let write =
        |name: &str, text: String| std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"));
    write("confusion_matrix.txt", interp.confusion_table() + "\n")?;
    interp.plot_confusion_matrix(&dir.join("confusion_matrix.png"))?;
    let confused: Vec<String> =
        interp.most_confused(1).iter().map(|(actual, predicted, n)| format!("{actual}\t{predicted}\t{n}")).collect();
    write("most_confused.txt", format!("actual\tpredicted\tcount\n{}\n", confused.join("\n")))?;
    interp.plot_top_losses(9, &dir.join("top_losses.png"))?;
    let mut rows = interp.top_losses(interp.len());
    rows.sort_by_key(|r| r.index);
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let file = quote(&r.file.display().to_string());
            format!("{file},{},{},{},{}", quote(&r.actual), quote(&r.predicted), r.probability, r.loss)
        })
        .collect();
    write("preds.csv", format!("file,actual,predicted,probability,loss\n{}\n", lines.join("\n")))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number in its shortest form (non-finite values become null).
fn json_num(v: impl Into<f64> + std::fmt::Display + Copy) -> String {
    if v.into().is_finite() { format!("{v}") } else { "null".into() }
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    // Every output path is checked before any data is read, so a bad one fails at once, not after the fit.
    let lr_find_png = Path::new("lr_find.png");
    let save = args.save.as_ref().map(|p| PathBuf::from(p.to_string_lossy().replace("{epoch}", "0")));
    let outputs = args.plot.iter().chain(&save).chain(&args.export).map(PathBuf::as_path);
    for path in outputs.chain(args.lr_find.then_some(lr_find_png)) {
        tiny_learner::check_writable(path)?;
    }
    if let Some(dir) = &args.interpret {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--interpret {}: cannot create the folder", dir.display()))?;
        tiny_learner::check_writable(&dir.join("confusion_matrix.png"))?;
    }
    // So is every metric name, which the error lists when one is unknown.
    let metrics = metrics_from_names(&args.metrics)?;
    tiny_tensor::set_num_threads(args.threads);
    tiny_nn::manual_seed(args.seed);
    let resume = args.resume.as_deref().map(CheckpointInfo::read).transpose()?;
    // On --resume the checkpoint wins for what the command line does not set: its seed always (so that shuffling
    // resumes), its learning rate, momentum and weight decay unless --lr, --momentum or --wd is given, in which
    // case the given value replaces the saved one in every group and a notice says so. The JSON line reports the
    // learning rate in force.
    let lr = match &resume {
        Some(info) if !args.given.lr => info.lr,
        _ => args.lr,
    };
    let seed = match &resume {
        Some(info) if info.seed != args.seed => {
            eprintln!("using the checkpoint's seed {} (not --seed {}) so shuffling resumes", info.seed, args.seed);
            info.seed
        }
        _ => args.seed,
    };

    let data = data_dir(&args)?;
    let mut cfg = FolderConfig { size: args.size, bs: args.bs, seed, ..FolderConfig::default() };
    if let Some(w) = args.workers {
        cfg.num_workers = w;
    }
    if args.skip_bad_files {
        cfg.on_bad_file = BadFilePolicy::Skip;
    }
    let dls = DataLoaders::from_folder(&data, &cfg).with_context(|| format!("reading {}", data.display()))?;
    let skipped = [dls.train.skipped(), dls.valid.skipped()];
    let valid_ds = dls.valid.dataset();
    let valid_ds = ImageFolderDataset::from_labelled(
        valid_ds.files().to_vec(),
        valid_ds.labels().to_vec(),
        *valid_ds.transform(),
    )?;
    let vocab = dls.vocab.names().to_vec();
    let (n_classes, n_train, n_valid) = (dls.vocab.len(), dls.train.dataset().len(), dls.valid.dataset().len());
    // The first training batch: the chapter's statistics come from it, and --interpret shows it.
    let first = match (args.stats, &args.interpret) {
        (Stats::Fixed(_), None) => None,
        _ => Some(dls.train.iter_epoch(0).next().context("the training split holds no image")??),
    };
    let norm = match (args.stats, &first) {
        (Stats::Fixed(norm), _) => norm,
        (Stats::Batch, Some(first)) => Normalize::from_batch(first)?,
        (Stats::Batch, None) => bail!("the training split holds no image"),
    };
    println!("classes {n_classes} train {n_train} valid {n_valid} stats mean {:?} std {:?}", norm.mean, norm.std);

    let model: Box<dyn Module> = match args.model.as_str() {
        "resnet18" => Box::new(resnet18(n_classes)?),
        _ => Box::new(simple_cnn(n_classes)?),
    };
    if let Some(path) = &args.init {
        // The head's module path: simple_cnn's Linear is its sixth layer, resnet18's is torchvision's `fc`.
        let head = if args.model == "resnet18" { "fc" } else { "5" };
        let report = tiny_nn::load_pretrained(model.as_ref(), path, head)?;
        if !report.missing_keys.is_empty() {
            eprintln!(
                "{}: its head does not fit {n_classes} classes; {} start freshly initialised",
                path.display(),
                report.missing_keys.join(", ")
            );
        }
    }
    let setup = SetupLearner::normalize(args.device, norm.mean, norm.std);
    let (momentum, wd) = (args.momentum, args.wd);
    let info = ExportInfo::new(&args.model, &vocab, norm, ItemTransform::squash(args.size));
    let mut learn = Learner::new(model, Loaders::from(dls), cross_entropy, lr, vec![Box::new(setup)])
        .with_seed(seed)
        .with_metrics(metrics)
        .with_export_info(info);
    learn = if args.opt == "adam" {
        learn.with_opt_func(move |ps, lr| Box::new(Adam::new(ps, lr).weight_decay(wd)))
    } else {
        learn.with_opt_func(move |ps, lr| Box::new(Sgd::new(ps, lr).momentum(momentum).weight_decay(wd)))
    };

    if args.lr_find {
        let res = learn.lr_find(LrFinder::new())?;
        res.plot(lr_find_png)?;
        if let Some(warning) = res.warning() {
            eprintln!("warning: {warning}");
        }
        let suggestion = res.suggestion.unwrap_or(f32::NAN);
        println!(
            "lr_find: {} steps, stopped: {}; suggested lr {suggestion:.2e}; plot in lr_find.png",
            res.lrs.len(),
            res.stop.map_or("out of epochs".to_string(), |s| format!("{s:?}"))
        );
        println!(
            "{{\"mode\":\"lr_find\",\"suggested_lr\":{},\"steps\":{},\"min_lr\":{},\"max_lr\":{}}}",
            json_num(suggestion),
            res.lrs.len(),
            json_num(res.lrs.first().copied().unwrap_or(f32::NAN)),
            json_num(res.lrs.last().copied().unwrap_or(f32::NAN))
        );
        return Ok(());
    }

    learn.add_cb(Box::new(TrackResults::new()));
    learn.add_cb(Box::new(Recorder::new().show_table(false)));
    // A diverged fit stops with an error (and a non-zero exit) before any checkpoint of it is written.
    learn.add_cb(Box::new(TerminateOnNaN::new()));
    if args.onecycle {
        let mut oc = OneCycle::new(lr);
        if args.cosine {
            oc = oc.cosine();
        }
        if args.momentum > 0.0 || args.opt == "adam" {
            oc = oc.cycle_momentum();
        }
        learn.add_cb(Box::new(oc));
    }
    if let Some(alpha) = args.mixup {
        learn.add_cb(Box::new(Mixup::new(alpha)?));
    }
    if let Some(path) = &args.save {
        learn.add_cb(Box::new(SaveModel::every_epoch(path)));
    }
    if let Some(n) = args.stop_after {
        learn.add_cb(Box::new(StopAfter(n)));
    }
    let start = match &args.resume {
        Some(path) => {
            let info = learn.load_checkpoint(path)?;
            let given = &args.given;
            let overrides = tiny_learner::Overrides {
                lr: given.lr.then_some(args.lr),
                momentum: given.momentum.then_some(args.momentum),
                weight_decay: given.wd.then_some(args.wd),
            };
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

    let pressed = catch_ctrl_c()?;
    learn.add_cb(Box::new(Interrupt { pressed, at: None }));
    let t0 = Instant::now();
    learn.fit_from(args.epochs, start).map_err(|e| match &e {
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
        eprintln!(
            "exported the model to {}; predict with `--example predict -- {} IMAGE...`",
            path.display(),
            path.display()
        );
    }
    if let (Some(dir), Some(first)) = (&args.interpret, first) {
        interpret(&mut learn, &valid_ds, first, dir)?;
        eprintln!("wrote the interpretation views to {}", dir.display());
    }
    let tta_acc = if args.tta { Some(learn.tta(&valid_ds, Tta::default())?.accuracy()?) } else { None };
    // A fit of no epochs validates the starting weights, as fastai's `learn.validate()`.
    let validated = if args.epochs == 0 { Some(learn.validate()?) } else { None };
    let track = learn.callback::<TrackResults>().context("the TrackResults callback is gone")?;
    let valid = validated.as_ref().or(track.last_valid());
    let train = track.last_train();
    let (train_n, train_secs, train_wait) = track
        .history
        .iter()
        .filter(|r| r.train)
        .fold((0usize, 0f64, 0f64), |(n, s, w), r| (n + r.n, s + r.secs, w + r.data_wait_secs));
    let f = |v: Option<f32>| json_num(v.unwrap_or(f32::NAN));
    let fields = [
        ("mode", json_str("train")),
        ("data", json_str(&data.display().to_string())),
        ("model", json_str(&args.model)),
        ("opt", json_str(&args.opt)),
        ("device", json_str(&args.device.to_string())),
        ("epochs", args.epochs.to_string()),
        ("start_epoch", start.to_string()),
        ("lr", json_num(lr)),
        ("onecycle", args.onecycle.to_string()),
        ("bs", args.bs.to_string()),
        ("size", args.size.to_string()),
        ("seed", seed.to_string()),
        ("init", args.init.as_ref().map_or("null".into(), |p| json_str(&p.display().to_string()))),
        ("stats_mean", format!("[{}]", norm.mean.map(json_num).join(","))),
        ("stats_std", format!("[{}]", norm.std.map(json_num).join(","))),
        ("threads", tiny_tensor::num_threads().to_string()),
        ("n_train", n_train.to_string()),
        ("n_valid", n_valid.to_string()),
        ("train_loss", f(train.map(|r| r.loss))),
        ("valid_loss", f(valid.map(|r| r.loss))),
        ("valid_acc", f(valid.map(|r| r.acc))),
        ("metrics", {
            let pairs = valid.map(|r| r.metrics.clone()).unwrap_or_default();
            let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_num(*v))).collect();
            format!("{{{}}}", body.join(","))
        }),
        ("tta_acc", f(tta_acc)),
        ("seconds", json_num(seconds)),
        ("train_img_per_s", json_num(train_n as f64 / train_secs.max(1e-9))),
        // Time the training loop waited for the loader, in seconds and as a share of training time.
        ("train_data_wait_s", json_num(train_wait)),
        ("train_data_wait_pct", json_num(100.0 * train_wait / train_secs.max(1e-9))),
        ("skipped_files", skipped.len().to_string()),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", json_str(k))).collect();
    println!("{{{}}}", body.join(","));
    Ok(())
}

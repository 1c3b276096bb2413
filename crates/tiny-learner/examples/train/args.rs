//! The train example's command line, declared with clap: every flag, its default and its check.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Parser, ValueEnum};
use tiny_data::Normalize;
use tiny_learner::{ARCHS, Arch, CheckpointInfo, ExportInfo, Head, IMAGENET_STATS};
use tiny_tensor::{Device, Precision};

/// The chapter's pipeline (loaders, Normalize, simple_cnn or resnet18, Learner) on an image folder, with fastai's
/// recipes around it. Prints the chapter's line per phase and ends with one JSON line.
#[derive(Parser, Debug)]
#[command(
    name = "train",
    after_help = "Ctrl-C stops the fit at the end of the current batch and says where it stopped and which \
                  checkpoint is the last one written; a second Ctrl-C exits at once."
)]
pub struct Args {
    /// Image folders train/<class>/**, val/<class>/** (or fastai's valid/; with --valid-pct, DATA/<class>/**)
    /// (default data/imagenette2-160, or a synthetic Imagenette-shaped set generated into data/synth-imagenette).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The architecture, from tiny-learner's registry.
    #[arg(long, default_value = "simple_cnn", value_parser = parse_arch())]
    pub model: &'static Arch,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub size: u32,
    /// Training batch size; validation uses twice it.
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    pub bs: usize,
    /// Epochs; 0 only validates the starting weights, as fastai's learn.validate().
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Learning rate, the peak one with a one-cycle schedule [default: 0.1, or 2e-3 with --fine-tune].
    #[arg(long)]
    pub lr: Option<f32>,
    /// The chapter's one-cycle schedule (warm-up 25% from lr/10, then down to 0); same as --schedule chapter.
    #[arg(long)]
    pub onecycle: bool,
    /// Cosine instead of linear stretches in the chapter's one-cycle (implies --onecycle).
    #[arg(long)]
    pub cosine: bool,
    /// A learning-rate schedule: the chapter's one-cycle, or fastai's fit_one_cycle (cosine, lr/25 up to lr and
    /// down to lr/1e5, momentum 0.95-0.85-0.95).
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = Opt::Sgd)]
    pub opt: Opt,
    /// SGD momentum [default: 0]; with a one-cycle schedule, momentum (or Adam's beta1) cycles 0.95 -> 0.85 ->
    /// 0.95 when it is set or the optimizer is Adam.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay [default: 0]: coupled (L2) for sgd and adam, decoupled for adamw.
    #[arg(long)]
    pub wd: Option<f32>,
    /// Mixup with Beta(A, A).
    #[arg(long, value_name = "A")]
    pub mixup: Option<f32>,
    /// CutMix with Beta(A, A): a box of another image of the batch pasted into each (fastai's default A is 1).
    #[arg(long, value_name = "A")]
    pub cutmix: Option<f32>,
    /// Run the LR finder, write lr_find.png, print the suggestion, and stop.
    #[arg(long)]
    pub lr_find: bool,
    /// Loader worker threads [default: the number of cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// tiny-tensor compute threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// The precision of the model's products: fp32, or bf16 (fastai's to_bf16(): convolutions and linear layers
    /// compute in bf16 with f32 sums; weights, gradients, optimizer, loss, checkpoints and exports stay f32).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Seed of initialisation, shuffling and Mixup.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Start from a PyTorch state_dict saved as safetensors (0.w ... 5.b for simple_cnn, torchvision's names for
    /// the resnets); a head of another size is left out and freshly initialised, as fastai does with a pretrained
    /// body, and the statistics default to ImageNet's.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// The model's head: own (the architecture's: torchvision's fc, ...) or fastai (vision_learner's create_head:
    /// concat pooling, batchnorm, Dropout and two Linear layers on a resnet's body, fastai's parameter groups).
    #[arg(long, default_value = "own", value_parser = parse_head)]
    pub head: Head,
    /// Start a resnet from the ImageNet weights of `cargo xtask fetch-weights MODEL`
    /// (data/weights/MODEL.safetensors in the workspace): --init with that file.
    #[arg(long)]
    pub pretrained: bool,
    /// Normalisation statistics: batch (the first training batch's, as the chapter), imagenet, or
    /// m1,m2,m3,s1,s2,s3 [default: the checkpoint's with --resume, an export's with --init EXPORT, imagenet with
    /// --init or --pretrained, else batch].
    #[arg(long, value_parser = parse_stats)]
    pub stats: Option<Stats>,
    /// fastai's fine_tune: --freeze-epochs with the body frozen, then N epochs of everything with discriminative
    /// learning rates (replaces --epochs and the schedule).
    #[arg(long, value_name = "N")]
    pub fine_tune: Option<usize>,
    /// The frozen epochs of --fine-tune.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub freeze_epochs: usize,
    /// Accumulate gradients over N items per optimizer step, fastai's GradientAccumulation(n_acc).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub accum: Option<usize>,
    /// Clip the gradients' total norm to this value before each step.
    #[arg(long, value_name = "NORM")]
    pub grad_clip: Option<f32>,
    /// Keep an exponential moving average of the weights with this decay (timm's ModelEma, fastxtend's
    /// EMACallback; 0.999 or 0.9998 are usual): validation runs on it, checkpoints carry it, and the model
    /// takes it at the end, so --export writes it.
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f32>,
    /// With --ema, timm's warm-up of the decay: 1 - (1 + update)^-2/3, up to DECAY.
    #[arg(long, requires = "ema")]
    pub ema_warmup: bool,
    /// Stop when the validation loss has not improved for N epochs.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub early_stop: Option<usize>,
    /// Label-smoothing cross entropy with this epsilon (fastai's LabelSmoothingCrossEntropy, PyTorch's
    /// label_smoothing).
    #[arg(long, value_name = "EPS")]
    pub label_smoothing: Option<f32>,
    /// fastai's aug_transforms on each training batch, on its device: flip, rotation up to 10 degrees, zoom up to
    /// 1.1, perspective warp 0.2, brightness and contrast 0.2.
    #[arg(long)]
    pub aug: bool,
    /// Training augmentation per item, in the loader: random resized crop and horizontal flip.
    #[arg(long)]
    pub item_aug: bool,
    /// Keep each resized image in memory after its first decode: `auto` (the default) when the item transform
    /// is deterministic, `on` also under `--item-aug` (the random crop then reads the cached image, which changes
    /// the augmented pixels), `off` never; `--cache` alone means `on`.
    #[arg(long, value_name = "MODE", default_value = "auto", num_args = 0..=1, default_missing_value = "on")]
    pub cache: tiny_data::CacheMode,
    /// The memory the image caches may take, both splits together [default: a quarter of the machine's memory].
    #[arg(long, value_name = "MB")]
    pub cache_mb: Option<usize>,
    /// Checkpoint after every epoch ({epoch} in PATH becomes the epoch number).
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Checkpoint whenever the validation loss improves.
    #[arg(long, value_name = "PATH")]
    pub save_best: Option<PathBuf>,
    /// Continue from a checkpoint up to --epochs.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
    /// End the fit after N epochs of the --epochs schedule, as an interruption would (with --save, then
    /// --resume, to split one fit over two processes).
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Write the loss curves as a PNG at the end.
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    /// Write fastai's CSVLogger rows to FILE: a header, then one row per epoch (losses, metrics, time), flushed
    /// as each epoch ends.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Leave unreadable or undecodable images out of their batch (counted in the JSON line as skipped_files)
    /// instead of stopping at the first one.
    #[arg(long)]
    pub skip_bad_files: bool,
    /// Split one folder of class folders (`DATA/<class>/**`) at random, this fraction for validation, as fastai's
    /// `from_folder(valid_pct=, seed=)`; for data without train/ and val/ folders.
    #[arg(long, value_name = "FRACTION")]
    pub valid_pct: Option<f32>,
    /// Train on a class that has no validation images (or the reverse) with a warning, instead of stopping.
    #[arg(long)]
    pub accept_missing_classes: bool,
    /// Read the labels from this CSV (with a header; relative to --data), as fastai's `from_csv`: file names
    /// in --fn-col, labels in --label-col, split by --valid-col or at random by --valid-pct (default 0.2).
    #[arg(long, value_name = "FILE", conflicts_with = "label_re")]
    pub labels_csv: Option<PathBuf>,
    /// With --labels-csv: the folder of the images, relative to --data (fastai's `folder`; default: --data).
    #[arg(long, value_name = "DIR", requires = "labels_csv")]
    pub folder: Option<PathBuf>,
    /// With --labels-csv: the file name column, a position from 0 or a header name.
    #[arg(long, value_name = "COL", default_value = "0", requires = "labels_csv")]
    pub fn_col: String,
    /// With --labels-csv: the label column, a position from 0 or a header name.
    #[arg(long, value_name = "COL", default_value = "1", requires = "labels_csv")]
    pub label_col: String,
    /// With --labels-csv: the column of true/false (or 1/0) that marks validation rows (fastai's `is_valid`).
    #[arg(long, value_name = "COL", requires = "labels_csv", conflicts_with = "valid_pct")]
    pub valid_col: Option<String>,
    /// With --labels-csv: appended to every file name (fastai's `suffix`, as `.jpg`).
    #[arg(long, value_name = "SUFFIX", default_value = "", requires = "labels_csv")]
    pub suffix: String,
    /// With --labels-csv: multi-label data, each label field a list of classes separated by this character
    /// (fastai's `label_delim`, such as ' '): trained with binary cross entropy (BCEWithLogitsLossFlat) and
    /// measured by accuracy_multi.
    #[arg(long, value_name = "CHAR", requires = "labels_csv")]
    pub label_delim: Option<char>,
    /// For multi-label data: a class is predicted when its probability exceeds this threshold (accuracy_multi's,
    /// the export's for predict, and the interpretation's).
    #[arg(long, value_name = "T", default_value_t = tiny_learner::DEFAULT_THRESH)]
    pub thresh: f32,
    /// Label every image under --data by the first group of this regular expression on its file name, as
    /// fastai's `from_name_re` (pets: '^(.+)_\d+\.jpg$'), split at random by --valid-pct (default 0.2).
    #[arg(long, value_name = "REGEX")]
    pub label_re: Option<String>,
    /// Validation metrics, comma-separated: accuracy, error_rate, top_k:K, f1, precision, recall (macro); for
    /// multi-label data accuracy_multi[:T] and f1_multi[:T] (the default there is accuracy_multi at --thresh).
    #[arg(long, default_value = "accuracy", value_name = "LIST")]
    pub metrics: String,
    /// After the fit, write the model with its classes, statistics and item transform, for `--example predict`
    /// and load_learner.
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,
    /// After the fit, also measure test-time augmentation's accuracy (tta_acc).
    #[arg(long)]
    pub tta: bool,
    /// Log to TensorBoard event files in this folder (fastai's TensorBoardCallback): each training batch's loss,
    /// learning rate and momentum, each epoch's validation loss and metrics, and the confusion matrix as an image at
    /// the end; `tensorboard --logdir DIR` shows them.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Before the fit, print fastai's learn.summary(): each layer's output shape and parameters on one training
    /// item, what trains, and the callbacks.
    #[arg(long)]
    pub summary: bool,
    /// Capture the training step (forward, backward, SGD step) into a CUDA graph once per fit and replay it for
    /// every batch of the first batch's shape, copying each batch into the graph's static inputs (needs --device
    /// cuda and a build with --features cuda). The first batch of a fit and a smaller last batch run eagerly. The
    /// graph keeps the hyper-parameters it was captured with, so the learning rate stays constant: it refuses the
    /// schedules, --fine-tune, --lr-find, --mixup, --cutmix, --accum, --grad-clip and Adam. The optimizer's
    /// step counters count the replayed steps only once.
    #[arg(long)]
    pub cuda_graph: bool,
    /// After the fit, write fastai's interpretation views into DIR: confusion_matrix.png and .txt,
    /// most_confused.txt, top_losses.png, show_batch.png, loss.png, and preds.csv (every validation file's
    /// target, prediction, probability and loss); for multi-label data per_class_confusion.txt instead of the
    /// confusion matrix and most_confused.
    #[arg(long, value_name = "DIR")]
    pub interpret: Option<PathBuf>,
}

/// `--model`: one of the registry's architectures by name, listed by `--help`.
fn parse_arch() -> impl TypedValueParser<Value = &'static Arch> {
    clap::builder::PossibleValuesParser::new(ARCHS.iter().map(|a| a.name)).try_map(|name: String| Arch::named(&name))
}

/// The optimizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Opt {
    /// SGD, the chapter's.
    Sgd,
    /// Adam with coupled weight decay.
    Adam,
    /// AdamW, with decoupled weight decay.
    Adamw,
}

/// The learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// The chapter's linear one-cycle.
    Chapter,
    /// fastai's fit_one_cycle.
    Fastai,
}

/// Where the normalisation statistics come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stats {
    /// The mean and std of the first training batch, as the chapter computes them.
    Batch,
    /// Fixed per-channel means and standard deviations.
    Fixed(Normalize),
}

/// Parses `--stats`: `batch`, `imagenet`, or six comma-separated numbers (three means, three stds).
fn parse_stats(v: &str) -> Result<Stats, String> {
    match v {
        "batch" => return Ok(Stats::Batch),
        "imagenet" => return Ok(Stats::Fixed(IMAGENET_STATS)),
        _ => {}
    }
    let nums: Vec<f32> = v
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| "expected batch, imagenet or m1,m2,m3,s1,s2,s3".to_string())?;
    if nums.len() != 6 || nums[3..].iter().any(|s| *s <= 0.0) || nums.iter().any(|x| !x.is_finite()) {
        return Err("expected three means and three positive standard deviations".into());
    }
    Ok(Stats::Fixed(Normalize { mean: [nums[0], nums[1], nums[2]], std: [nums[3], nums[4], nums[5]] }))
}

/// Parses `--device`.
fn parse_device(v: &str) -> Result<Device, String> {
    v.parse().map_err(|e: tiny_tensor::TensorError| e.to_string())
}

/// Parses `--head`: own or fastai.
fn parse_head(v: &str) -> Result<Head, String> {
    v.parse().map_err(|e: tiny_learner::LearnerError| e.to_string())
}

/// Parses a count of at least one.
fn at_least_one(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Args {
    /// Checks what clap cannot see alone, and says a word about values that run but are most likely mistakes.
    pub fn check(&self) -> anyhow::Result<()> {
        let finite = |name: &str, v: Option<f32>, ok: fn(f32) -> bool, want: &str| match v {
            Some(v) if !(v.is_finite() && ok(v)) => anyhow::bail!("--{name} {v}: expected {want}"),
            _ => Ok(()),
        };
        finite("lr", self.lr, |v| v >= 0.0, "a learning rate >= 0")?;
        finite("momentum", self.momentum, |v| (0.0..1.0).contains(&v), "a momentum in [0, 1)")?;
        finite("wd", self.wd, |v| v >= 0.0, "a weight decay >= 0")?;
        finite("mixup", self.mixup, |v| v > 0.0, "an alpha > 0")?;
        finite("cutmix", self.cutmix, |v| v > 0.0, "an alpha > 0")?;
        finite("grad-clip", self.grad_clip, |v| v > 0.0, "a norm > 0")?;
        finite("label-smoothing", self.label_smoothing, |v| (0.0..=1.0).contains(&v), "an epsilon in [0, 1]")?;
        finite("thresh", Some(self.thresh), |v| (0.0..1.0).contains(&v), "a probability in [0, 1)")?;
        if self.label_delim.is_some() && self.label_smoothing.is_some() {
            anyhow::bail!(
                "--label-smoothing smooths a softmax over one class; multi-label data (--label-delim) has none"
            );
        }
        if self.fine_tune.is_some() && (self.resume.is_some() || self.stop_after.is_some()) {
            anyhow::bail!("--fine-tune runs two fits in one process; it cannot --resume or --stop-after");
        }
        if self.fine_tune.is_some() && self.init().is_none() {
            eprintln!(
                "warning: --fine-tune without --pretrained or --init trains a randomly initialised body in two stages; \
                 fine_tune is for pretrained weights (plain training is --epochs N)"
            );
        }
        if self.lr_find {
            let ignored: Vec<&str> = [
                ("--export", self.export.is_some()),
                ("--save", self.save.is_some()),
                ("--save-best", self.save_best.is_some()),
                ("--fine-tune", self.fine_tune.is_some()),
                ("--resume", self.resume.is_some()),
                ("--plot", self.plot.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, given)| given.then_some(flag))
            .collect();
            if !ignored.is_empty() {
                eprintln!(
                    "warning: --lr-find runs the LR finder, writes lr_find.png and stops: {} not used",
                    ignored.join(", ")
                );
            }
        }
        if self.pretrained && self.model.pretrained.is_none() {
            let with: Vec<&str> =
                tiny_learner::ARCHS.iter().filter(|a| a.pretrained.is_some()).map(|a| a.name).collect();
            anyhow::bail!(
                "--pretrained: there are no ImageNet weights for {}; add --model with one of {}",
                self.model.name,
                with.join(", ")
            );
        }
        if self.head == Head::Fastai && self.model.vision.is_none() {
            self.model.build_with(1, self.head)?;
        }
        if let Some(decay) = self.ema {
            tiny_learner::Ema::new(decay)?;
        }
        if self.pretrained && self.init.is_some() {
            anyhow::bail!("--pretrained and --init both name the starting weights; give one");
        }
        if self.onecycle && self.schedule == Some(Schedule::Fastai) {
            anyhow::bail!("--onecycle is the chapter's schedule; it excludes --schedule fastai");
        }
        self.check_cuda_graph()?;
        if self.model.whole_strides && !self.size.is_multiple_of(self.model.stride as u32) {
            anyhow::bail!(
                "--size {}: {}'s shortcuts pool 2x2 only on even maps, so the size must be a multiple of {} (64, 128, \
                 160, 224)",
                self.size,
                self.model.name,
                self.model.stride
            );
        }
        if self.model.stride == 32 && self.size < 32 {
            eprintln!(
                "warning: --size {} with {}: its stride-32 body sees less than one pixel; 64 or more is usual",
                self.size, self.model.name
            );
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.threads > cores || self.workers.is_some_and(|w| w > 4 * cores) {
            eprintln!("warning: more threads than this machine's {cores} cores slow the run down");
        }
        Ok(())
    }

    /// `--cuda-graph` replays one captured step, only on a GPU; `GraphStep` itself refuses what changes the step
    /// from one batch to the next (schedules, Mixup, Adam, ...) as the fit begins.
    fn check_cuda_graph(&self) -> anyhow::Result<()> {
        if !self.cuda_graph {
            return Ok(());
        }
        if !cfg!(feature = "cuda") {
            anyhow::bail!("--cuda-graph needs a build with --features cuda (and --device cuda)");
        }
        if self.device == Device::Cpu {
            anyhow::bail!("--cuda-graph records GPU work into a CUDA graph: it needs --device cuda, not the CPU");
        }
        Ok(())
    }

    /// The metrics to measure: `--metrics`, where for multi-label data (`--label-delim`) `accuracy` is
    /// `accuracy_multi` at `--thresh`.
    ///
    /// # Errors
    /// When a metric is of the other kind of data: a single-label metric for multi-label data, or the reverse.
    pub fn metric_names(&self) -> anyhow::Result<String> {
        let multi_label = self.label_delim.is_some();
        let names: Vec<String> =
            self.metrics
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(|m| {
                    if multi_label && m == "accuracy" {
                        format!("accuracy_multi:{}", self.thresh)
                    } else {
                        m.to_owned()
                    }
                })
                .collect();
        for name in &names {
            let is_multi = name.starts_with("accuracy_multi") || name.starts_with("f1_multi");
            if is_multi != multi_label {
                anyhow::bail!(
                    "--metrics {name}: a {} metric, but the data is {} (multi-label data comes from --labels-csv with \
                     --label-delim; its metrics are accuracy_multi and f1_multi)",
                    if is_multi { "multi-label" } else { "single-label" },
                    if multi_label { "multi-label" } else { "single-label" }
                );
            }
        }
        Ok(names.join(","))
    }

    /// The schedule in force: `--schedule`, or the chapter's with `--onecycle` / `--cosine`.
    pub fn schedule(&self) -> Option<Schedule> {
        self.schedule.or((self.onecycle || self.cosine).then_some(Schedule::Chapter))
    }

    /// The starting weights: `--init`, or the model's fetched ImageNet weights with `--pretrained`.
    pub fn init(&self) -> Option<PathBuf> {
        let fetched = self.model.pretrained.map(|file| crate::in_workspace("data/weights").join(file));
        self.init.clone().or_else(|| fetched.filter(|_| self.pretrained))
    }

    /// The statistics in force and where they come from: `--stats`; else those of the checkpoint resumed from
    /// (so a resumed fit normalises as the one that wrote it); else, starting from given weights, the export's own
    /// when they are a tiny export, or the architecture's (ImageNet's); else the first training batch's.
    pub fn stats(&self, resume: Option<&CheckpointInfo>) -> anyhow::Result<(Stats, &'static str)> {
        Ok(match (self.stats, resume.and_then(|r| r.export_info.as_ref()), self.init()) {
            (Some(stats), _, _) => (stats, "--stats"),
            (None, Some(info), _) => (Stats::Fixed(info.normalize), "the checkpoint"),
            (None, None, Some(init)) => match ExportInfo::read(&init)? {
                Some(export) => (Stats::Fixed(export.normalize), "the --init export"),
                None => (Stats::Fixed(self.model.stats), "the architecture's (ImageNet)"),
            },
            (None, None, None) => (Stats::Batch, "the first training batch"),
        })
    }
}

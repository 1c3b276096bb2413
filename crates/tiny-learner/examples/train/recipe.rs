//! The recipe: the learner the flags describe (model, normalisation, optimizer, splitter) and its callbacks.

use tiny_data::{ImageDataLoaders, ItemTransform, Normalize};
use tiny_learner::{
    Arch, AugTransforms, CheckpointInfo, CsvLogger, CutMix, EarlyStopping, ExportInfo, FitOneCycle,
    GradientAccumulation, GradientClip, Learner, LrRange, Metric, Mixup, Monitor, OneCycle, Overrides, SaveModel,
    SetupLearner, TerminateOnNaN, TrackResults,
};
use tiny_nn::Module;
use tiny_optim::{Adam, AdamW, Sgd};

use crate::args::{Args, Opt, Schedule};
use crate::stop::StopAfter;

/// The learner: the architecture (from `--init` when given), normalisation on the device, the optimizer, the
/// architecture's splitter and what an export records.
pub fn learner(
    args: &Args,
    dls: ImageDataLoaders,
    norm: Normalize,
    lr: f32,
    seed: u64,
    metrics: Vec<Box<dyn Metric>>,
) -> anyhow::Result<Learner> {
    let mut info = ExportInfo::new(args.model.name, dls.vocab.names(), norm, ItemTransform::squash(args.size))
        .with_head(args.head);
    if dls.multi_label() {
        info = info.with_multi_label(args.thresh);
    }
    let model = model(args, dls.vocab.len())?;
    let setup = SetupLearner::normalize(args.device, norm.mean, norm.std);
    let (momentum, wd, nesterov) = (args.momentum.unwrap_or(0.0), args.wd.unwrap_or(0.0), args.nesterov);
    let loss = loss_func(args, dls.multi_label())?;
    let learn = Learner::new(model, dls, loss, lr, vec![Box::new(setup)])
        .with_seed(seed)
        .with_precision(args.precision)
        .with_metrics(metrics)
        .with_export_info(info)
        .with_splitter(args.model.splitter_with(args.head));
    Ok(match args.opt {
        Opt::Adam => learn.with_opt_func(move |ps, lr| Box::new(Adam::new(ps, lr).weight_decay(wd))),
        Opt::Adamw => learn.with_opt_func(move |ps, lr| Box::new(AdamW::new(ps, lr).weight_decay(wd))),
        Opt::Sgd => learn.with_opt_func(move |ps, lr| {
            Box::new(Sgd::new(ps, lr).momentum(momentum).nesterov(nesterov).weight_decay(wd))
        }),
    })
}

/// The model with `--head`'s head, from `--init` when given (the body's weights under a fresh head of `n_classes`;
/// for fastai's head, a torchvision file's names moved into the body).
fn model(args: &Args, n_classes: usize) -> anyhow::Result<Box<dyn Module>> {
    let model = args.model.build_with(n_classes, args.head)?;
    if args.pretrained
        && let Some(path) = args.init()
    {
        args.model.check_imagenet_weights(&path)?;
    }
    if let Some(path) = args.init() {
        let (head, rename) = (args.model.head_path(args.head), |n: &str| Arch::pretrained_name(args.head, n));
        let report = tiny_nn::load_pretrained_renamed(model.as_ref(), &path, head, &rename)?;
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

/// The loss: the chapter's cross entropy, or with `--label-smoothing` fastai's `LabelSmoothingCrossEntropy`; for
/// multi-label data fastai's `BCEWithLogitsLossFlat`.
fn loss_func(args: &Args, multi_label: bool) -> anyhow::Result<tiny_learner::LossFn> {
    Ok(match args.label_smoothing {
        _ if multi_label => Box::new(tiny_nn::bce_with_logits_flat),
        Some(eps) => Box::new(tiny_nn::LabelSmoothingCrossEntropy::new(eps)?.loss_func()),
        None => Box::new(tiny_nn::cross_entropy),
    })
}

/// The fit's callbacks, from the flags: the chapter's line, the schedule, augmentation, the training tweaks and
/// what is written during the fit.
pub fn add_callbacks(learn: &mut Learner, args: &Args, lr: f32, norm: Normalize) -> anyhow::Result<()> {
    learn.add_cb(Box::new(TrackResults::new()));
    // A diverged fit stops with an error (and a non-zero exit) before any checkpoint of it is written.
    learn.add_cb(Box::new(TerminateOnNaN::new()));
    match args.schedule() {
        Some(_) if args.fine_tune.is_some() => {
            eprintln!("--fine-tune brings fastai's schedules; the schedule flag is left out")
        }
        Some(Schedule::Chapter) => {
            let mut oc = OneCycle::new(lr);
            if args.cosine {
                oc = oc.cosine();
            }
            if args.momentum.unwrap_or(0.0) > 0.0 || args.opt != Opt::Sgd {
                oc = oc.cycle_momentum();
            }
            learn.add_cb(Box::new(oc));
        }
        Some(Schedule::Fastai) => learn.add_cb(Box::new(FitOneCycle::new(LrRange::One(lr)))),
        None => {}
    }
    if let Some(alpha) = args.mixup {
        let mixup = Mixup::new(alpha)?;
        // Mixup mixes per-item losses; with label smoothing they are the smoothed ones.
        learn.add_cb(Box::new(match args.label_smoothing {
            Some(eps) => mixup.with_item_loss(tiny_nn::LabelSmoothingCrossEntropy::new(eps)?.items_func()),
            None => mixup,
        }));
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
    if let Some(max_norm) = args.grad_clip {
        learn.add_cb(Box::new(GradientClip::new(max_norm)));
    }
    if let Some(decay) = args.ema {
        // The model takes the average after the whole fit (main), not after each of fine_tune's two fits.
        let ema = tiny_learner::Ema::new(decay)?;
        learn.add_cb(Box::new(if args.ema_warmup { ema.warmup(tiny_learner::EmaWarmup::default()) } else { ema }));
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
    if let Some(path) = &args.csv {
        learn.add_cb(Box::new(CsvLogger::new(path)));
    }
    if let Some(dir) = &args.tensorboard {
        learn.add_cb(Box::new(tiny_learner::TensorBoard::new(dir)));
    }
    if let Some(n) = args.stop_after {
        learn.add_cb(Box::new(StopAfter(n)));
    }
    #[cfg(feature = "cuda")]
    if args.cuda_graph {
        learn.add_cb(Box::new(tiny_learner::GraphStep::new(args.device)));
    }
    Ok(())
}

/// The learning rate and seed in force. On --resume the checkpoint wins for what the command line does not set:
/// its seed always (so that shuffling resumes), its learning rate unless --lr is given.
pub fn lr_and_seed(args: &Args, resume: Option<&CheckpointInfo>) -> (f32, u64) {
    let default_lr = if args.fine_tune.is_some() { 2e-3 } else { 0.1 };
    let lr = args.lr.or(resume.map(|info| info.lr)).unwrap_or(default_lr);
    let seed = match resume {
        Some(info) if info.seed != args.seed => {
            eprintln!("using the checkpoint's seed {} (not --seed {}) so shuffling resumes", info.seed, args.seed);
            info.seed
        }
        _ => args.seed,
    };
    (lr, seed)
}

/// Loads `--resume`'s checkpoint into the learner, with --lr, --momentum and --wd replacing the saved values in
/// every group (with a notice), and returns the epoch to start from (0 without --resume).
pub fn resume(learn: &mut Learner, args: &Args) -> anyhow::Result<usize> {
    let Some(path) = &args.resume else { return Ok(0) };
    // A checkpoint of the other kind of data would load (the head has as many outputs) and train on the wrong loss.
    let saved = CheckpointInfo::read(path)?.export_info.map(|i| i.multi_label);
    if let Some(multi_label) = saved.filter(|&m| m != args.label_delim.is_some()) {
        anyhow::bail!(
            "--resume {}: the checkpoint is of a {} model, and this run's data is {} (--label-delim makes it \
             multi-label)",
            path.display(),
            if multi_label { "multi-label" } else { "single-label" },
            if multi_label { "single-label" } else { "multi-label" }
        );
    }
    let info = learn.load_checkpoint(path)?;
    let overrides = Overrides { lr: args.lr, momentum: args.momentum, weight_decay: args.wd };
    for (name, saved, used) in learn.override_hyper(overrides) {
        eprintln!("using --{name} {used}, not the checkpoint's {saved}");
    }
    if info.n_epochs != args.epochs {
        eprintln!("the checkpoint was written by a {}-epoch fit; schedules now span {}", info.n_epochs, args.epochs);
    }
    eprintln!("resuming at epoch {} of {}", info.next_epoch, args.epochs);
    Ok(info.next_epoch)
}

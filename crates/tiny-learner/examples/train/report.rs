//! What the train example writes: the JSON line's settings and extras, the skipped files, and the interpretation views.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use tiny_data::{LeftOut, Normalize};
use tiny_learner::{ClassificationInterpretation, Learner, MultiLabelInterpretation, Recorder, SaveModel};
use tiny_tensor::Precision;

use crate::args::{Args, Schedule};
use crate::stop::StoppedAt;

/// The settings of a training run, the first fields of its JSON line (`JsonSummary` adds the results after them).
#[derive(Serialize, Debug)]
pub struct Run {
    pub mode: &'static str,
    pub data: String,
    pub model: &'static str,
    pub opt: String,
    pub device: String,
    /// `--precision`, written only when it is not the default fp32 (so an fp32 run's line is as before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Whether `--cuda-graph` was on.
    pub cuda_graph: bool,
    /// `--ema`'s decay, written only when there is one (so a run without it keeps its line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<f32>,
    /// `--head`, written only for fastai's (so a run with the architecture's own keeps its line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<&'static str>,
    pub epochs: usize,
    pub start_epoch: usize,
    pub lr: f32,
    pub onecycle: bool,
    pub schedule: Option<String>,
    pub fine_tune: Option<usize>,
    pub bs: usize,
    pub size: u32,
    pub seed: u64,
    pub init: Option<PathBuf>,
    pub stats_mean: [f32; 3],
    pub stats_std: [f32; 3],
    /// Where the statistics came from: --stats, the checkpoint, the architecture's, or the first training batch.
    pub stats_from: &'static str,
    pub threads: usize,
    pub n_train: usize,
    pub n_valid: usize,
}

impl Run {
    /// The settings of `args`, with the values in force after --resume and the data's counts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &Args,
        data: &Path,
        lr: f32,
        seed: u64,
        start_epoch: usize,
        (norm, stats_from): (Normalize, &'static str),
        counts: [usize; 2],
    ) -> Run {
        Run {
            mode: "train",
            data: data.display().to_string(),
            model: args.model.name,
            opt: format!("{:?}", args.opt).to_lowercase(),
            device: args.device.to_string(),
            precision: (args.precision != Precision::Fp32).then(|| args.precision.to_string()),
            cuda_graph: args.cuda_graph,
            ema: args.ema,
            head: (args.head != tiny_learner::Head::Own).then_some(args.head.name()),
            epochs: args.fine_tune.map_or(args.epochs, |n| n + args.freeze_epochs),
            start_epoch,
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
            stats_from,
            threads: tiny_tensor::num_threads(),
            n_train: counts[0],
            n_valid: counts[1],
        }
    }
}

/// What the run measured after the fit, the last fields of its JSON line.
#[derive(Serialize, Debug)]
pub struct After {
    /// How many training steps were replayed from a CUDA graph.
    pub graph_steps: usize,
    pub tta_acc: Option<f32>,
    pub skipped_files: usize,
    /// What the folder walk left out, by reason (`not_an_image`, `unreadable`, `link_loop`, `outside_splits`).
    pub left_out: BTreeMap<&'static str, usize>,
}

/// The JSON line of `--lr-find`.
#[derive(Serialize, Debug)]
pub struct LrFindSummary {
    pub mode: &'static str,
    pub suggested_lr: Option<f32>,
    pub suggestions: BTreeMap<String, f32>,
    pub steps: usize,
    pub min_lr: Option<f32>,
    pub max_lr: Option<f32>,
}

/// Writes the validation set's confusion matrix, drawn as `--interpret` draws it, into the TensorBoard event file
/// (single-label data only: a multi-label model's confusion is one 2x2 table per class, in `--interpret`'s text).
pub fn confusion_to_tensorboard(learn: &mut Learner) -> anyhow::Result<()> {
    if learn.state().dls.multi_label() {
        return Ok(());
    }
    let interp = ClassificationInterpretation::from_learner(learn)?;
    let png = std::env::temp_dir().join(format!("tiny-confusion-{}.png", std::process::id()));
    interp.plot_confusion_matrix(&png)?;
    let bytes = std::fs::read(&png).with_context(|| format!("reading {}", png.display()))?;
    let _ = std::fs::remove_file(&png);
    // A PNG's width and height are the big-endian words at bytes 16 and 20 of its header.
    let word = |at: usize| bytes.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let (width, height) = (word(16), word(20));
    let tb = learn.callback_mut::<tiny_learner::TensorBoard>().context("the TensorBoard callback is gone")?;
    if let Some((writer, step)) = tb.writer() {
        writer.image(step, "confusion_matrix", (width, height), bytes)?;
        writer.flush()?;
    }
    Ok(())
}

/// Writes fastai's interpretation views of the trained `learn` over its validation set into `dir`.
pub fn interpret(learn: &mut Learner, first: tiny_data::Batch, dir: &Path) -> anyhow::Result<()> {
    let vocab = learn.state().export_info.as_ref().map(|i| i.vocab.clone()).unwrap_or_default();
    tiny_learner::show_batch(&first, &vocab, &dir.join("show_batch.png"), 16)?;
    learn.callback::<Recorder>().context("the Recorder is gone")?.plot_loss(&dir.join("loss.png"))?;
    let write =
        |name: &str, text: String| std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"));
    if learn.state().dls.multi_label() {
        let interp = MultiLabelInterpretation::from_learner(learn)?;
        write("per_class_confusion.txt", interp.confusion_table())?;
        interp.plot_top_losses(9, &dir.join("top_losses.png"))?;
        return write("preds.csv", preds_csv(interp.top_losses(interp.len())));
    }
    let interp = ClassificationInterpretation::from_learner(learn)?;
    write("confusion_matrix.txt", interp.confusion_table() + "\n")?;
    interp.plot_confusion_matrix(&dir.join("confusion_matrix.png"))?;
    let confused: Vec<String> =
        interp.most_confused(1).iter().map(|(actual, predicted, n)| format!("{actual}\t{predicted}\t{n}")).collect();
    write("most_confused.txt", format!("actual\tpredicted\tcount\n{}\n", confused.join("\n")))?;
    interp.plot_top_losses(9, &dir.join("top_losses.png"))?;
    write("preds.csv", preds_csv(interp.top_losses(interp.len())))
}

/// Every validation file's target, prediction, probability and loss as CSV, in the validation set's order.
fn preds_csv(mut rows: Vec<tiny_learner::TopLoss>) -> String {
    rows.sort_by_key(|r| r.index);
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let file = quote(&r.file.display().to_string());
            format!("{file},{},{},{},{}", quote(&r.actual), quote(&r.predicted), r.probability, r.loss)
        })
        .collect();
    format!("file,actual,predicted,probability,loss\n{}\n", lines.join("\n"))
}

/// Says what the folder walk left out, by reason, with the first file of each reason.
pub fn left_out(left_out: &LeftOut) {
    for (reason, n) in left_out.counts() {
        let first = left_out.entries.iter().find(|(_, r)| r.name() == reason);
        let example = first.map_or_else(String::new, |(p, _)| format!(", such as {}", p.display()));
        eprintln!("left out {n} {} ({reason}){example}", if n == 1 { "entry" } else { "entries" });
    }
}

/// Says which unreadable files `--skip-bad-files` left out, five by name.
pub fn skipped_files(skipped: &[PathBuf]) {
    if skipped.is_empty() {
        return;
    }
    let shown: Vec<String> = skipped.iter().take(5).map(|p| p.display().to_string()).collect();
    let more = skipped.len().saturating_sub(shown.len());
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    eprintln!("skipped {} unreadable files: {}{more}", skipped.len(), shown.join(", "));
}

/// After Ctrl-C stopped the fit: says where, and which checkpoint to resume from, and exits with 130.
pub fn interrupted(learn: &Learner, args: &Args, (epoch, training, iter, n_iter): StoppedAt) -> ! {
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

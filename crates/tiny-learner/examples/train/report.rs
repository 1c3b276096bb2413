//! What the train example writes after the fit: the JSON summary line and fastai's interpretation views.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use tiny_data::ImageFolderDataset;
use tiny_learner::{ClassificationInterpretation, Learner, Recorder};

/// The JSON line that ends a training run, in the order its fields are written.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub mode: &'static str,
    pub data: String,
    pub model: &'static str,
    pub opt: String,
    pub device: String,
    /// `--precision`, written only when it is not the default fp32 (so an fp32 run's line is as before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Whether `--cuda-graph` was on, and how many training steps were replayed from a graph.
    pub cuda_graph: bool,
    pub graph_steps: usize,
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
    pub threads: usize,
    pub n_train: usize,
    pub n_valid: usize,
    pub train_loss: Option<f32>,
    pub valid_loss: Option<f32>,
    pub valid_acc: Option<f32>,
    pub metrics: BTreeMap<String, f32>,
    pub tta_acc: Option<f32>,
    pub seconds: f64,
    pub train_img_per_s: f64,
    /// Time the training loop waited for the loader, in seconds and as a share of training time.
    pub train_data_wait_s: f64,
    pub train_data_wait_pct: f64,
    /// The loader's share of each training epoch, in percent: with the decode-once cache, the first epoch decodes
    /// and the later ones read memory.
    pub epoch_data_wait_pct: Vec<f64>,
    pub skipped_files: usize,
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

/// Writes fastai's interpretation views of the trained `learn` over the validation set `valid` into `dir`.
pub fn interpret(
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

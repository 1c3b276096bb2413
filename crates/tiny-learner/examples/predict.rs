//! Predicts the classes of image files with a model that `train --export` wrote, without its data folder.
//!
//! ```text
//! cargo run --release -p tiny-learner --example predict -- model.safetensors a.jpg [b.jpg ...]
//! ```
//!
//! Prints each file's most probable classes with their probabilities, or one JSON line with `--json`. A multi-label
//! model prints the classes above its threshold first (`--thresh` changes it).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;
use tiny_learner::{Prediction, load_learner};
use tiny_tensor::Device;

const USAGE: &str = "usage: predict MODEL IMAGE [IMAGE ...] [options] [-- PATH ...]
  MODEL          an export written by `train --export PATH` (or Learner::export)
  IMAGE          JPEG or PNG files, or folders of them (searched to any depth); after --, every
                 argument is a path, even one that starts with --
                 A file that cannot be predicted is named on standard error, the others are
                 predicted, and the exit status is 1
  --top K        how many classes to show per image (default 3)
  --thresh T     for a multi-label model: predict every class whose probability exceeds T
                 (default: the threshold the model was exported with, 0.5 unless train --thresh)
  --json         print one JSON line instead of text
  --device D     cpu (default) or cuda";

/// The command line.
struct Args {
    model: PathBuf,
    images: Vec<PathBuf>,
    top: usize,
    thresh: Option<f32>,
    json: bool,
    device: Device,
}

/// Parses `std::env::args`; `None` means `--help` was asked for.
fn parse_args() -> anyhow::Result<Option<Args>> {
    let (mut top, mut json, mut device, mut paths) = (3, false, Device::Cpu, Vec::new());
    let mut thresh = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--" => paths.extend(it.by_ref().map(PathBuf::from)),
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--top" => {
                let v = it.next().context("--top needs a value")?;
                top = v.parse().ok().filter(|&k| k > 0).with_context(|| format!("--top {v}: expected a count"))?;
            }
            "--thresh" => {
                let v = it.next().context("--thresh needs a value")?;
                let t = v.parse().ok().filter(|t: &f32| (0.0..1.0).contains(t));
                thresh = Some(t.with_context(|| format!("--thresh {v}: expected a probability in [0, 1)"))?);
            }
            "--device" => device = it.next().context("--device needs a value")?.parse()?,
            flag if flag.starts_with("--") => bail!("unknown option {flag}\n{USAGE}"),
            path => paths.push(PathBuf::from(path)),
        }
    }
    if paths.len() < 2 {
        bail!("give a model and at least one image\n{USAGE}");
    }
    let model = paths.remove(0);
    // A folder stands for its image files, as fastai's get_image_files finds them.
    let mut images = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = tiny_data::get_image_files(&path).with_context(|| format!("reading {}", path.display()))?;
            if found.is_empty() {
                bail!("{}: no image files in this folder", path.display());
            }
            images.extend(found);
        } else {
            images.push(path);
        }
    }
    Ok(Some(Args { model, images, top, thresh, json, device }))
}

/// Each file's prediction, or why it has none: all in batches, or, when a file fails, one by one, so that the good
/// files are still predicted.
fn predict_each(learn: &mut tiny_learner::Learner, files: &[PathBuf]) -> Vec<Result<Prediction, String>> {
    match learn.predict_all(files) {
        Ok(all) => all.into_iter().map(Ok).collect(),
        Err(_) => files.iter().map(|f| learn.predict(f).map_err(|e| format!("{e:#}"))).collect(),
    }
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        return write_out(USAGE);
    };
    let mut learn = load_learner(&args.model, args.device)?;
    let info = learn.state_mut().export_info.as_mut().context("the export carries no class names")?;
    if let Some(t) = args.thresh {
        if !info.multi_label {
            bail!(
                "--thresh {t}: {} is a single-label model, which predicts its most probable class",
                args.model.display()
            );
        }
        info.thresh = t;
    }
    let info = info.clone();
    let results = predict_each(&mut learn, &args.images);
    let failed: Vec<(&PathBuf, &String)> =
        args.images.iter().zip(&results).filter_map(|(f, r)| Some((f, r.as_ref().err()?))).collect();
    for (file, why) in &failed {
        eprintln!("cannot predict {}: {why}", file.display());
    }
    let good = args.images.iter().zip(&results).filter_map(|(f, r)| Some((f, r.as_ref().ok()?)));
    if args.json {
        let items: Vec<_> = good
            .map(|(file, p)| {
                let top: Vec<_> = p.top(args.top, &info.vocab).into_iter().map(|(c, pr)| json!({"class": c, "prob": pr})).collect();
                let mut item = json!({"file": file.display().to_string(), "class": p.class, "index": p.index, "prob": p.probs[p.index as usize], "top": top});
                if info.multi_label {
                    item["labels"] = json!(p.labels);
                }
                item
            })
            .collect();
        let failures: Vec<_> =
            failed.iter().map(|(f, why)| json!({"file": f.display().to_string(), "error": why})).collect();
        let line = json!({"model": args.model.display().to_string(), "arch": info.arch, "predictions": items, "failed": failures});
        write_out(&line.to_string())?;
    } else {
        for (file, p) in good {
            let top: Vec<String> = p.top(args.top, &info.vocab).iter().map(|(c, pr)| format!("{c} {pr:.3}")).collect();
            if info.multi_label {
                let labels = if p.labels.is_empty() { "(none)".to_owned() } else { p.labels.join(" ") };
                write_out(&format!("{}: [{labels}] above {}; {}", file.display(), info.thresh, top.join(", ")))?;
            } else {
                write_out(&format!("{}: {}", file.display(), top.join(", ")))?;
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} files could not be predicted (named above)", failed.len(), args.images.len());
    }
    Ok(())
}

/// Writes a line of results on standard output; a closed or full standard output (`predict ... | head -1`) is an
/// error that says so, not a panic.
fn write_out(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("writing the predictions to standard output")
}

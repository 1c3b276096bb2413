//! Predicts the classes of image files with a model that `train --export` wrote, without its data folder.
//!
//! ```text
//! cargo run --release -p tiny-learner --example predict -- model.safetensors a.jpg [b.jpg ...]
//! ```
//!
//! Prints each file's most probable classes with their probabilities, or one JSON line with `--json`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;
use tiny_learner::load_learner;
use tiny_tensor::Device;

const USAGE: &str = "usage: predict MODEL IMAGE [IMAGE ...] [options]
  MODEL          an export written by `train --export PATH` (or Learner::export)
  IMAGE          JPEG or PNG files
  --top K        how many classes to show per image (default 3)
  --json         print one JSON line instead of text
  --device D     cpu (default) or cuda";

/// The command line.
struct Args {
    model: PathBuf,
    images: Vec<PathBuf>,
    top: usize,
    json: bool,
    device: Device,
}

/// Parses `std::env::args`; `None` means `--help` was asked for.
fn parse_args() -> anyhow::Result<Option<Args>> {
    let (mut top, mut json, mut device, mut paths) = (3, false, Device::Cpu, Vec::new());
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--top" => {
                let v = it.next().context("--top needs a value")?;
                top = v.parse().ok().filter(|&k| k > 0).with_context(|| format!("--top {v}: expected a count"))?;
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
    Ok(Some(Args { model, images: paths, top, json, device }))
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        return write_out(USAGE);
    };
    let mut learn = load_learner(&args.model, args.device)?;
    let info = learn.state().export_info.clone().context("the export carries no class names")?;
    let predictions = learn.predict_all(&args.images)?;
    if args.json {
        let items: Vec<_> = args
            .images
            .iter()
            .zip(&predictions)
            .map(|(file, p)| {
                let top: Vec<_> = p.top(args.top, &info.vocab).into_iter().map(|(c, pr)| json!({"class": c, "prob": pr})).collect();
                json!({"file": file.display().to_string(), "class": p.class, "index": p.index, "prob": p.probs[p.index as usize], "top": top})
            })
            .collect();
        let line = json!({"model": args.model.display().to_string(), "arch": info.arch, "predictions": items});
        return write_out(&line.to_string());
    }
    for (file, p) in args.images.iter().zip(&predictions) {
        let top: Vec<String> = p.top(args.top, &info.vocab).iter().map(|(c, pr)| format!("{c} {pr:.3}")).collect();
        write_out(&format!("{}: {}", file.display(), top.join(", ")))?;
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

//! summary.txt: the steps, tiny beside PyTorch per configuration, the kernels of one step, the verdict, a rerun.

use std::fmt::Write;

use crate::parse::KernelRow;
use crate::plan::BenchRow;
use crate::summary::{BenchLine, Status, Step, Summary};

/// Fills the summary's benchmark table from the steps: tiny's `bench/<label>` rows and PyTorch's `torch/rows`.
pub fn fill_bench(summary: &mut Summary, rows: &[BenchRow]) {
    let torch = summary.steps.iter().find(|s| s.name == "torch/rows");
    let torch_of = |label: &str| -> Option<f64> {
        let figure = torch?.figures.iter().find(|f| f.get("config").and_then(|c| c.as_str()) == Some(label))?;
        figure.get("ms_per_step")?.as_f64()
    };
    let mut lines = Vec::new();
    for row in rows {
        let name = row.name();
        let tiny: Option<&Step> = summary.steps.iter().find(|s| s.name == name);
        let tiny_ms = tiny.and_then(|s| s.figure("ms_per_step"));
        // PyTorch's bench() reports the host's mean over queued steps: tiny's wall_ms is the same measure.
        let tiny_wall = tiny.and_then(|s| s.figure("wall_ms")).or(tiny_ms);
        let torch_ms = if row.again { None } else { torch_of(&row.label) };
        let ratio = match (tiny_wall, torch_ms) {
            (Some(t), Some(p)) if p > 0.0 => Some((t / p * 1000.0).round() / 1000.0),
            _ => None,
        };
        let mut note = row.note.clone();
        if row.again {
            note = Some(format!(
                "the first row again, for the noise{}",
                note.map(|n| format!("; {n}")).unwrap_or_default()
            ));
        }
        lines.push(BenchLine {
            config: if row.again { format!("{} (again)", row.label) } else { row.label.clone() },
            tiny_ms,
            tiny_mean_ms: tiny_wall,
            tiny_img_per_s: tiny.and_then(|s| s.figure("img_per_s")),
            tiny_passed: tiny.is_some_and(|s| s.status == Status::Passed),
            torch_ms,
            ratio,
            note,
        });
    }
    summary.bench = lines;
}

/// The command that reruns what did not pass, or `None` when everything passed. The probe and the gate always
/// run; when the gate failed, the rerun is the whole run.
pub fn rerun(summary: &Summary, entry: &str) -> Option<String> {
    let bad = summary.bad_steps();
    if bad.is_empty() {
        return None;
    }
    if bad.iter().any(|s| s.name.starts_with("gate/") || s.name.starts_with("probe/")) {
        return Some(format!("bash {entry}"));
    }
    let names: Vec<&str> = bad.iter().map(|s| s.name.as_str()).collect();
    Some(format!("bash {entry} --only {}", names.join(",")))
}

/// summary.txt.
pub fn text(s: &Summary) -> String {
    let mut t = String::new();
    let _ =
        writeln!(t, "== tiny GPU run, started {} on {}: {}s of a {}s budget", s.started, s.host, s.seconds, s.budget_s);
    if let Some(gpu) = s.steps.iter().find(|x| x.name == "probe/nvidia-smi").and_then(|x| x.figures.first()) {
        let f = |k: &str| gpu.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
        let _ = writeln!(
            t,
            "   {}, driver {}, {}; SM clock {} of {}, power {} of {}, {}",
            f("gpu"),
            f("driver"),
            f("memory"),
            f("sm_clock"),
            f("sm_clock_max"),
            f("power_draw"),
            f("power_limit"),
            f("pstate")
        );
    }
    if let Some(libs) = s.steps.iter().find(|x| x.name == "probe/libraries").and_then(|x| x.figures.last()) {
        let v = |k: &str| libs["versions"][k].as_str().unwrap_or("unknown").to_owned();
        let _ = writeln!(t, "   NVRTC {}, cuBLAS {}, the driver's CUDA {}", v("nvrtc"), v("cublas"), v("driver_cuda"));
    }
    let _ = writeln!(
        t,
        "== steps (logs: {})",
        s.phases
            .iter()
            .map(|p| p.log)
            .fold(Vec::new(), |mut v, l| {
                if !v.contains(&l) {
                    v.push(l);
                }
                v
            })
            .join(", ")
    );
    for step in &s.steps {
        let secs = step.seconds.map_or("-".to_owned(), |x| format!("{x:.1}"));
        let _ = writeln!(t, "   {:<11} {:>7}  {:<44} {}", step.status.word(), secs, step.name, step.note);
    }
    if !s.bench.is_empty() {
        let _ = writeln!(
            t,
            "== ms per training step on this GPU: tiny's bench_step (median of CUDA events per step, and the host's mean) against PyTorch's bench_gpu.py (the host's mean); tiny/torch compares the means"
        );
        let _ = writeln!(
            t,
            "   {:<36} {:>9} {:>9} {:>9} {:>10}  note",
            "config", "tiny med", "tiny mean", "torch", "tiny/torch"
        );
        let num = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.2}"));
        for b in &s.bench {
            let mark = if b.tiny_ms.is_some() && !b.tiny_passed { "*" } else { "" };
            let note = b.note.clone().unwrap_or_default();
            let (med, mean) = (num(b.tiny_ms) + mark, num(b.tiny_mean_ms));
            let _ = writeln!(
                t,
                "   {:<36} {med:>9} {mean:>9} {:>9} {:>10}  {note}",
                b.config,
                num(b.torch_ms),
                num(b.ratio)
            );
        }
        if s.bench.iter().any(|b| b.tiny_ms.is_some() && !b.tiny_passed) {
            let _ = writeln!(t, "   (* printed by a step that then failed or timed out)");
        }
        if let Some(again) = s.bench.iter().find(|b| b.config.ends_with(" (again)")) {
            let first = s.bench.iter().find(|b| b.config == again.config.trim_end_matches(" (again)"));
            if let (Some(a), Some(b)) = (first.and_then(|f| f.tiny_ms), again.tiny_ms) {
                let _ = writeln!(
                    t,
                    "   noise: {} ran twice, {a:.2} and {b:.2} ms ({:.1}% apart)",
                    again.config.trim_end_matches(" (again)"),
                    (b - a).abs() / a.min(b) * 100.0
                );
            }
        }
    }
    if !s.kernels.tiny.is_empty() || !s.kernels.torch.is_empty() {
        let _ = writeln!(
            t,
            "== GPU time per kernel, {}: tiny (ncu) | PyTorch (torch.profiler)",
            s.kernels.config.clone().unwrap_or_default()
        );
        kernel_columns(&mut t, &s.kernels.tiny, &s.kernels.torch, 20);
    }
    let bad: Vec<&str> = s.bad_steps().iter().map(|x| x.name.as_str()).collect();
    let verdict = match (s.complete, bad.is_empty()) {
        (false, _) => "INCOMPLETE (interrupted); every step not listed as passed is unverified".to_owned(),
        (true, true) => "PASSED (no step failed, timed out or was left out)".to_owned(),
        (true, false) => format!("FAILED: {}", bad.join(", ")),
    };
    let _ = writeln!(t, "== verdict: {verdict}");
    if let Some(rerun) = &s.rerun {
        let _ = writeln!(t, "== to rerun what did not pass, in a second call: {rerun}");
    }
    t
}

/// Two kernel tables side by side, `rows` lines long, each with its total first.
fn kernel_columns(t: &mut String, tiny: &[KernelRow], torch: &[KernelRow], rows: usize) {
    let total = |k: &[KernelRow]| k.iter().map(|r| r.total_us).sum::<f64>();
    let calls = |k: &[KernelRow]| k.iter().map(|r| r.calls).sum::<u64>();
    let cell = |k: &[KernelRow], i: usize| -> String {
        let all = total(k);
        k.get(i).map_or(String::new(), |r| {
            let name: String = r.name.chars().take(40).collect();
            format!("{name:<40} {:>5} {:>9.1} {:>5.1}%", r.calls, r.total_us, r.total_us / all.max(1e-9) * 100.0)
        })
    };
    let head = |k: &[KernelRow]| format!("{:<40} {:>5} {:>9.1} {:>6}", "total (us, calls)", calls(k), total(k), "");
    let _ = writeln!(t, "   {:<63} | {}", head(tiny), head(torch));
    for i in 0..rows.min(tiny.len().max(torch.len())) {
        let _ = writeln!(t, "   {:<63} | {}", cell(tiny, i), cell(torch, i));
    }
}

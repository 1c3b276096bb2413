//! gpu-run, the GPU bundle's runner: probe, gate, parity suites, benchmarks, device tests, memcheck, a kernel
//! profile and one epoch, in that order, each phase under its own cap within one budget.
//!
//! `cargo xtask gpu-bundle` builds it into `.device-bin/` beside the binaries it runs; on the GPU machine, which
//! has no cargo, `bash .device-bin/run.sh` starts it. The phases, in order of what only a GPU can tell:
//!
//! - probe: the sources match the binaries (`sources.sha256`), nvidia-smi (clocks, power), the CUDA libraries
//!   (chosen and linked for the binaries, NVRTC's version), compute-sanitizer, ncu and Python at hand;
//! - gate: one tiny training step opens the GPU and compiles every kernel into the cache; if it fails the run
//!   stops there, with what the probe found;
//! - parity: tiny-tensor's device suites (every op against the CPU and PyTorch's fixtures), several at once;
//! - bench and torch: tiny's `bench_step` per configuration, then PyTorch's `bench()` for the same rows in one
//!   Python process, with one row repeated to show the noise;
//! - tests: tiny-nn's, tiny-learner's and tiny-optim's device tests;
//! - memcheck: compute-sanitizer's memcheck over tiny-tensor's CUDA suite;
//! - profile: one resnet18 step's GPU time per kernel, tiny's under ncu beside PyTorch's torch.profiler table;
//! - train: one epoch end to end, only when the budget has time left for it.
//!
//! No phase runs past its cap (the caps add up to the budget), so a hanging test delays the benchmarks by its
//! phase's cap at most. Each step runs in a process group of its own, killed whole when it runs out of time.
//! `$OUT` receives at most eight files: summary.json (every step's status, figures and log tail, rewritten
//! whole after every change, so it is valid at every moment), summary.txt, and one log per group of phases,
//! appended to as each step ends. The exit status is 0 only if no step failed, timed out or was left out; on
//! SIGINT or SIGTERM the steps are stopped, the summary written, and the status is 128 + the signal.

mod exec;
mod libs;
mod parse;
mod payload;
mod phases;
mod plan;
mod probe;
mod report;
mod run;
mod summary;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use phases::Bundle;
use run::{Run, say};
use summary::{Kernels, Status, Summary};

/// The command line; environment variables give the defaults (see each flag).
#[derive(Debug, Parser)]
#[command(
    name = "run.sh",
    about = "Runs tiny's device checks and benchmarks from the GPU bundle, phase by phase (probe, gate, parity, bench, \
             torch, tests, memcheck, profile, train), each under its own cap within the budget; --list shows the \
             plan, and $OUT receives summary.json, summary.txt and six logs"
)]
struct Args {
    /// Run only the steps whose names start with one of these (comma-separated: `tests/tiny-nn-cuda,bench/`);
    /// the probe and the gate always run. summary.txt ends with the list that reruns what did not pass.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds for the whole run; the phases' caps scale with it [env: TINY_RUN_BUDGET, default 400].
    #[arg(long)]
    budget: Option<f64>,
    /// Where the summaries and logs go [env: OUT, default: out/ in the bundle].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Test binaries run at once [env: TINY_TEST_JOBS, default 4].
    #[arg(long)]
    jobs: Option<usize>,
    /// Each test binary's --test-threads [env: TINY_TEST_THREADS, default 4].
    #[arg(long)]
    test_threads: Option<usize>,
    /// Print the phases and the benchmark rows, and run nothing.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    // Before any other thread starts (see catch_signals).
    if let Err(e) = exec::catch_signals() {
        eprintln!("gpu-run: warning: SIGINT and SIGTERM will not write the summary ({e})");
    }
    match start(Args::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gpu-run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A setting from the command line, else from the environment variable `var`, else `default`.
fn setting<T: std::str::FromStr>(flag: Option<T>, var: &str, default: T) -> anyhow::Result<T> {
    match (flag, std::env::var(var)) {
        (Some(v), _) => Ok(v),
        (None, Ok(s)) if !s.is_empty() => s.parse().ok().with_context(|| format!("{var}={s:?} is not a valid value")),
        _ => Ok(default),
    }
}

fn start(args: Args) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("finding the runner's own path")?;
    let dir = exe.parent().context("the runner's folder")?.to_path_buf();
    let root = dir.parent().context("the bundle's parent folder")?.to_path_buf();
    let rel = dir.strip_prefix(&root).map_or_else(|_| dir.display().to_string(), |r| r.display().to_string());
    let bundle = Bundle { dir: dir.clone(), rel };
    let budget: f64 = setting(args.budget, "TINY_RUN_BUDGET", plan::BUDGET)?;
    anyhow::ensure!(budget >= 1.0, "the budget must be at least 1 second");
    let jobs = setting(args.jobs, "TINY_TEST_JOBS", 4)?;
    let threads = setting(args.test_threads, "TINY_TEST_THREADS", 4)?;
    let rows = match std::env::var("TINY_BENCH_CONFIGS") {
        Ok(table) if !table.trim().is_empty() => plan::parse_rows(&table),
        _ => plan::parse_rows(plan::DEFAULT_ROWS),
    }
    .map_err(anyhow::Error::msg)?;
    if args.list {
        list(budget, &rows);
        return Ok(0);
    }

    let out = match args.out.or_else(|| std::env::var_os("OUT").filter(|o| !o.is_empty()).map(PathBuf::from)) {
        Some(out) => out,
        None => dir.join("out"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    for f in plan::out_files() {
        let _ = std::fs::remove_file(out.join(f));
    }
    let tmp = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tmp.join(format!("tiny-gpu-run.{}", std::process::id()));
    std::fs::create_dir_all(work.join("logs")).with_context(|| format!("creating {}", work.display()))?;
    // Last of what may fail before the run: from here on, what was unpacked is removed again at the end.
    let unpacked = payload::unpack(&dir)?.unwrap_or_default();
    if !unpacked.is_empty() {
        say(&format!("== unpacked {} files from {}", unpacked.len(), dir.join(payload::PAYLOAD).display()));
    }
    // A copy that lost the executable bits still runs.
    for exe in
        bundle.tests().iter().map(|t| dir.join("tests").join(t)).chain(["bench_step", "train"].map(|e| dir.join(e)))
    {
        let _ = std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755));
    }

    let summary = Summary {
        format: "tiny-gpu-run/2",
        verdict: "incomplete",
        complete: false,
        exit_status: None,
        not_passed: Vec::new(),
        started: summary::utc(std::time::SystemTime::now()),
        updated: String::new(),
        seconds: 0.0,
        budget_s: budget,
        host: std::fs::read_to_string("/proc/sys/kernel/hostname").map_or("unknown".into(), |h| h.trim().to_owned()),
        root: root.display().to_string(),
        out: out.display().to_string(),
        python: None,
        bundle: std::fs::read_to_string(dir.join("bundle.json"))
            .ok()
            .map_or(Value::Null, |t| serde_json::from_str(&t).unwrap_or(Value::String(t))),
        phases: Vec::new(),
        steps: Vec::new(),
        bench: Vec::new(),
        kernels: Kernels::default(),
        rerun: None,
    };
    let mut run = Run::new(root, out, work.clone(), budget, summary);
    run.only = args.only;
    say(&format!("== tiny GPU run on {}, budget {budget:.0}s, output in {}", run.summary.host, run.out.display()));
    run.save();

    let found = phases::probe(&mut run, &bundle);
    if phases::gate(&mut run, &bundle, &found) {
        rest(&mut run, &bundle, &found, &rows, jobs, threads);
    } else {
        left_out(&mut run, &bundle, &rows, threads, "not run: the gate failed (see gate/step)");
    }
    let code = finish(&mut run, &bundle, &rows);
    let _ = std::fs::remove_dir_all(&work);
    payload::remove(&unpacked);
    Ok(code)
}

/// The phases after the gate.
fn rest(run: &mut Run, bundle: &Bundle, found: &phases::Found, rows: &[plan::BenchRow], jobs: usize, threads: usize) {
    run.begin("parity");
    let specs = phases::test_specs(run, bundle, true, threads);
    if specs.is_empty() && bundle.tests().is_empty() {
        run.record("parity/tests", Status::Failed, "the bundle holds no test binaries (its tests/ folder is empty)");
    }
    run.run_all(specs, jobs);

    run.begin("bench");
    run.run_all(phases::bench_specs(bundle, rows), 1);
    run.begin("torch");
    match phases::torch_spec(run, bundle, rows, found.python.as_deref()) {
        Ok(spec) => {
            let n = run.run_all(vec![spec], 1)[0];
            let step = &mut run.summary.steps[n - 1];
            let rows = step.figures.iter().filter(|f| f.get("config").is_some());
            let failed = rows.clone().filter(|f| f.get("error").is_some()).count();
            let note = format!("{} rows, {failed} failed", rows.count());
            step.note = match (&step.reason, step.status) {
                (_, Status::Passed) | (None, _) => note,
                (Some(reason), Status::Skipped) => reason.clone(),
                (Some(reason), _) => format!("{reason}; {note}"),
            };
        }
        Err(why) => {
            run.record("torch/rows", Status::Skipped, &why);
        }
    }
    report::fill_bench(&mut run.summary, rows);

    run.begin("tests");
    let specs = phases::test_specs(run, bundle, false, threads);
    run.run_all(specs, jobs);

    run.begin("memcheck");
    match phases::memcheck_spec(run, bundle, found, threads) {
        Ok(spec) => {
            run.run_all(vec![spec], 1);
        }
        Err(why) => {
            run.record("memcheck/tiny-tensor-cuda", Status::Skipped, &why);
        }
    }

    run.begin("profile");
    for spec in phases::profile_specs(run, bundle, found) {
        match spec {
            Ok(spec) => {
                run.run_all(vec![spec], 1);
            }
            Err((name, why)) => {
                run.record(&name, Status::Skipped, &why);
            }
        }
    }
    phases::read_kernels(run);

    run.begin("train");
    match phases::train_spec(run, bundle) {
        Ok(spec) => {
            run.run_all(vec![spec], 1);
        }
        Err(why) => {
            run.record("train/epoch", Status::Skipped, &why);
        }
    }
    run.end_phase();
}

/// Records every step after the gate as left out, for `reason`, so that the summary lists what did not run.
fn left_out(run: &mut Run, bundle: &Bundle, rows: &[plan::BenchRow], threads: usize, reason: &str) {
    let mut names: Vec<String> = Vec::new();
    names.extend(phases::test_specs(run, bundle, true, threads).into_iter().map(|s| s.name));
    names.extend(rows.iter().map(plan::BenchRow::name));
    names.push("torch/rows".into());
    names.extend(phases::test_specs(run, bundle, false, threads).into_iter().map(|s| s.name));
    names.extend(["memcheck/tiny-tensor-cuda", "profile/ncu", "profile/torch", "train/epoch"].map(String::from));
    for name in names {
        run.record(&name, Status::NotRun, reason);
    }
    run.end_phase();
}

/// Writes the final summary.json and summary.txt, and returns the exit status.
fn finish(run: &mut Run, bundle: &Bundle, rows: &[plan::BenchRow]) -> u8 {
    report::fill_bench(&mut run.summary, rows);
    let entry = format!("{}/run.sh", bundle.rel);
    run.summary.rerun = report::rerun(&run.summary, &entry);
    let interrupted = exec::stopped();
    let code = match interrupted {
        Some(sig) => 128 + sig as u8,
        None if run.summary.bad_steps().is_empty() => 0,
        None => 1,
    };
    let seconds = run::round(run.elapsed());
    run.summary.refresh(seconds, Some((interrupted.is_none(), i32::from(code))));
    if let Err(e) = run.summary.write(&run.out) {
        say(&format!("warning: could not write summary.json: {e}"));
    }
    let text = report::text(&run.summary);
    say("");
    say(&text);
    write_text(&run.out.join("summary.txt"), &text);
    code
}

fn write_text(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        say(&format!("warning: could not write {}: {e}", path.display()));
    }
}

/// `--list`: the phases with their caps at this budget, the benchmark rows, the files of `$OUT`.
fn list(budget: f64, rows: &[plan::BenchRow]) {
    for p in &plan::PHASES {
        let cap = plan::cap(p, budget).map_or("what is left".into(), |c| format!("{c:.0}s"));
        say(&format!("{:<9} cap {cap:<13} log {}", p.name, p.log));
    }
    for row in rows {
        let flags = row.flags.join(" ");
        say(&format!("{:<44} {flags:<38} {}", row.name(), row.note.clone().unwrap_or_default()));
    }
    say(&format!("files under $OUT: {}", plan::out_files().join(", ")));
}

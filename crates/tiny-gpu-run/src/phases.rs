//! The phases of the run, in their order: what each one runs, and what it reads from its steps.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::exec::Running;
use crate::libs::{self, Places};
use crate::parse;
use crate::plan::{self, BenchRow};
use crate::probe;
use crate::run::{Kind, Run, Spec, say};
use crate::summary::Status;

/// What the probe found that later phases use.
#[derive(Debug, Default)]
pub struct Found {
    pub python: Option<PathBuf>,
    pub sanitizer: Option<PathBuf>,
    pub ncu: Option<PathBuf>,
    /// The libraries' log, printed again when the gate fails.
    pub libraries: String,
}

/// The bundle: where its binaries are, as the commands name them (relative to the repository).
#[derive(Debug)]
pub struct Bundle {
    /// The bundle's folder, absolute.
    pub dir: PathBuf,
    /// The same, relative to the repository (`.device-bin`), for the commands.
    pub rel: String,
}

impl Bundle {
    fn exe(&self, name: &str) -> String {
        format!("{}/{name}", self.rel)
    }

    /// The test binaries, by file name, sorted.
    pub fn tests(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("tests"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// probe: the sources, nvidia-smi, the libraries (which sets the binaries' environment), the tools at hand.
pub fn probe(run: &mut Run, bundle: &Bundle) -> Found {
    run.begin("probe");
    let list = bundle.dir.join("sources.sha256");
    if !list.is_file() {
        run.record("probe/sources", Status::Skipped, "the bundle has no sources.sha256");
    } else {
        let t = Instant::now();
        let (status, log, reason) = match probe::changed_sources(&run.root, &list) {
            Ok((n, changed)) if changed.is_empty() => (Status::Passed, format!("{n} files as built\n"), None),
            Ok((n, changed)) => (
                Status::Failed,
                format!("{} of {n} files differ:\n{}\n", changed.len(), changed.join("\n")),
                Some("the binaries were built from other sources than these (the log names the files)".to_owned()),
            ),
            Err(e) => (Status::Failed, e.clone(), Some(e)),
        };
        run.record_inline("probe/sources", status, t.elapsed().as_secs_f64(), &log, reason);
    }

    match probe::find_tool("nvidia-smi") {
        None => {
            run.record("probe/nvidia-smi", Status::Skipped, "no nvidia-smi on this machine");
        }
        Some(smi) => {
            let smi = smi.display().to_string();
            let script = format!("{smi} && {smi} {} --format=csv,noheader", probe::smi_query());
            let n =
                run.run_all(vec![Spec::new("probe/nvidia-smi", vec!["sh".into(), "-c".into(), script], 10.0)], 1)[0];
            let log = std::fs::read_to_string(run.step_log(n)).unwrap_or_default();
            run.summary.steps[n - 1].figures = probe::smi_json(&log);
            run.save();
        }
    }

    let python = probe::python();
    let t = Instant::now();
    let sites = python.as_deref().map(|p| python_sites(run, p)).unwrap_or_default();
    let inherited = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let places = Places::here(&inherited, &sites);
    let (status, log, reason, chosen) = match libs::choose(&places, &inherited, &run.work.join("cuda-libs")) {
        Ok(c) if c.paths.len() == libs::LIBS.len() => (Status::Passed, c.log.clone(), None, Some(c)),
        Ok(c) => {
            let reason = "libcuda, libnvrtc or libcublas not found under cudarc's names (or only a stub)".to_owned();
            (Status::Failed, c.log.clone(), Some(reason), Some(c))
        }
        Err(e) => (Status::Failed, String::new(), Some(format!("linking the libraries: {e}")), None),
    };
    let mut log = log;
    if let Some(c) = &chosen {
        log += &format!("{}\n", c.figures);
        run.env.push(("LD_LIBRARY_PATH".into(), c.ld_library_path.clone()));
    }
    for line in log.lines() {
        say(&format!("   {line}"));
    }
    run.record_inline("probe/libraries", status, t.elapsed().as_secs_f64(), &log, reason);
    let root = run.root.display().to_string();
    run.env.extend([
        // A device test that cannot open the GPU fails, naming why, instead of passing as a skip.
        ("TINY_REQUIRE_CUDA".to_owned(), "1".to_owned()),
        // The test binaries were built elsewhere: they find the crates' fixture files here ...
        ("TINY_CRATES_DIR".to_owned(), format!("{root}/crates")),
        // ... and the examples that two of them run in the bundle, as there is no cargo to build them.
        ("TINY_EXAMPLES_DIR".to_owned(), bundle.dir.display().to_string()),
        ("RUST_BACKTRACE".to_owned(), "1".to_owned()),
    ]);
    run.python_env.push(("PYTHONUNBUFFERED".to_owned(), "1".to_owned()));

    let t = Instant::now();
    let found = Found {
        sanitizer: probe::find_tool("compute-sanitizer"),
        ncu: probe::find_tool("ncu"),
        python: python.clone(),
        libraries: log,
    };
    let mut tools = serde_json::Map::new();
    let mut text = String::new();
    for (key, path) in [("compute_sanitizer", &found.sanitizer), ("ncu", &found.ncu)] {
        let version = path.as_deref().map(|p| first_line(run, p, "--version"));
        text += &format!(
            "{key}: {}\n",
            path.as_deref().map_or("not found".into(), |p| format!(
                "{} ({})",
                p.display(),
                version.clone().unwrap_or_default()
            ))
        );
        tools.insert(key.into(), json!({"path": path, "version": version}));
    }
    text += &format!("python: {}\n", python.as_deref().map_or("not found".into(), |p| p.display().to_string()));
    tools.insert("python".into(), json!(python));
    text += &format!("{}\n", Value::Object(tools));
    run.record_inline("probe/tools", Status::Passed, t.elapsed().as_secs_f64(), &text, None);
    run.summary.python = python.map(|p| p.display().to_string());
    found
}

/// The interpreter's site-packages folders (where pip puts NVRTC and cuBLAS wheels).
fn python_sites(run: &Run, python: &Path) -> Vec<PathBuf> {
    let argv = vec![python.display().to_string(), "-c".into(), probe::PYTHON_SITES.into()];
    let text = capture(run, &argv, "python-sites");
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).filter(|p| p.is_dir()).collect()
}

/// The first line that `tool flag` prints (a version), within a few seconds.
fn first_line(run: &Run, tool: &Path, flag: &str) -> String {
    let argv = vec![tool.display().to_string(), flag.to_owned()];
    let text = capture(run, &argv, "version");
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

/// What a short command prints, given ten seconds at most.
fn capture(run: &Run, argv: &[String], what: &str) -> String {
    let log = run.work.join(format!("{what}.out"));
    let _ = std::fs::remove_file(&log);
    if let Ok(r) = Running::start(argv, &run.root, &[], &log, 10.0) {
        r.wait();
    }
    std::fs::read_to_string(&log).unwrap_or_default()
}

/// gate: opening the GPU, compiling every kernel once into the cache, one tiny training step. Returns whether
/// it passed; when it did not, the run stops, and this prints what the probe found beside the step's end.
pub fn gate(run: &mut Run, bundle: &Bundle, found: &Found) -> bool {
    run.begin("gate");
    let step =
        ["--device", "cuda", "--model", "simple_cnn", "--bs", "8", "--size", "32", "--steps", "2", "--warmup", "1"];
    let argv = command(bundle.exe("bench_step"), &step);
    let mut spec = Spec::new("gate/step", argv, run.cap("gate"));
    spec.hint = Some("the GPU did not run one training step");
    let n = run.run_all(vec![spec], 1)[0];
    let step = &run.summary.steps[n - 1];
    if step.status == Status::Passed {
        return true;
    }
    say("!! the gate failed: nothing else can run on this GPU. What the probe found:");
    for line in found.libraries.lines() {
        say(&format!("   {line}"));
    }
    say(&format!("   gate/step: {}", step.reason.clone().unwrap_or_default()));
    false
}

/// parity and tests: the test binaries whose names start with `tiny-tensor-` (the op suites, CPU against GPU)
/// or not (tiny-nn's, tiny-learner's and tiny-optim's device tests), `jobs` at a time.
pub fn test_specs(run: &Run, bundle: &Bundle, parity: bool, threads: usize) -> Vec<Spec> {
    let phase = if parity { "parity" } else { "tests" };
    let cap = run.cap(phase);
    let mut names: Vec<String> =
        bundle.tests().into_iter().filter(|t| t.starts_with("tiny-tensor-") == parity).collect();
    // The suites that cover most first: they start in the first wave.
    names.sort_by_key(|t| (!t.ends_with("-cuda"), t.clone()));
    names
        .into_iter()
        .map(|t| {
            let mut spec = Spec::new(
                format!("{phase}/{t}"),
                vec![bundle.exe(&format!("tests/{t}")), format!("--test-threads={threads}")],
                cap,
            );
            spec.kind = Kind::Test;
            spec
        })
        .collect()
}

/// bench: tiny's row of each configuration, one at a time, as the GPU is timed.
pub fn bench_specs(bundle: &Bundle, rows: &[BenchRow]) -> Vec<Spec> {
    rows.iter()
        .map(|row| {
            let mut spec = Spec::new(row.name(), row.tiny_argv(&bundle.exe("bench_step")), row.timeout);
            spec.config = Some(row.label.clone());
            spec.remark = row.note.clone();
            spec
        })
        .collect()
}

/// torch: PyTorch's rows, all in one Python process (torch imports once), or why there are none.
pub fn torch_spec(run: &Run, bundle: &Bundle, rows: &[BenchRow], python: Option<&Path>) -> Result<Spec, String> {
    let Some(python) = python else {
        return Err("no Python interpreter (TINY_RUN_PYTHON, /opt/torch/.venv, python3)".into());
    };
    let reference = bundle.dir.join("reference");
    if !reference.join("bench_gpu.py").is_file() {
        return Err("the bundle has no reference/bench_gpu.py".into());
    }
    let args: Vec<Value> = rows.iter().filter_map(BenchRow::torch_args).collect();
    let script = write_script(run, "torch_rows.py", include_str!("torch_rows.py"))?;
    let table = run.work.join("torch_rows.json");
    std::fs::write(&table, Value::from(args).to_string()).map_err(|e| format!("{}: {e}", table.display()))?;
    let argv = [python.display().to_string(), script, format!("{}/reference", bundle.rel), table.display().to_string()];
    let mut spec = Spec::new("torch/rows", argv.into(), run.cap("torch"));
    (spec.kind, spec.python) = (Kind::Optional, true);
    Ok(spec)
}

/// memcheck: compute-sanitizer's memcheck over tiny-tensor's CUDA suite.
pub fn memcheck_spec(run: &Run, bundle: &Bundle, found: &Found, threads: usize) -> Result<Spec, String> {
    let sanitizer = found.sanitizer.as_ref().ok_or("no compute-sanitizer on this machine")?;
    if !bundle.dir.join("tests/tiny-tensor-cuda").is_file() {
        return Err("the bundle has no tests/tiny-tensor-cuda".into());
    }
    let flags = ["--tool", "memcheck", "--error-exitcode", "99", "--print-limit", "20"];
    let mut argv = command(sanitizer.display(), &flags);
    argv.extend([bundle.exe("tests/tiny-tensor-cuda"), format!("--test-threads={threads}")]);
    let mut spec = Spec::new("memcheck/tiny-tensor-cuda", argv, run.cap("memcheck"));
    spec.kind = Kind::Test;
    spec.hint = Some("memcheck found errors (exit status 99) or a test failed");
    Ok(spec)
}

/// The configuration whose kernels the profile phase lists, on both sides.
pub const PROFILED: (&str, u32, u32) = ("resnet18", 128, 128);

/// profile: one resnet18 TF32 step of tiny under ncu, and PyTorch's same step under torch.profiler.
pub fn profile_specs(run: &Run, bundle: &Bundle, found: &Found) -> Vec<Result<Spec, (String, String)>> {
    let cap = run.cap("profile");
    let (model, bs, size) = PROFILED;
    let ncu = match &found.ncu {
        None => Err(("profile/ncu".to_owned(), "no ncu on this machine".to_owned())),
        Some(ncu) => {
            let metric = ["--metrics", "gpu__time_duration.sum", "--csv", "--print-units", "base"];
            let mut argv = command(ncu.display(), &["--clock-control", "none", "--cache-control", "none"]);
            argv.extend(metric.map(String::from));
            let row = BenchRow {
                label: String::new(),
                model: model.into(),
                bs,
                size,
                steps: 1,
                warmup: 0,
                timeout: cap,
                flags: vec!["--tf32".into()],
                torch: plan::Torch::None,
                again: false,
                note: None,
            };
            argv.extend(row.tiny_argv(&bundle.exe("bench_step")));
            let mut spec = Spec::new("profile/ncu", argv, cap * 0.6);
            spec.skip_if =
                Some(("ERR_NVGPUCTRPERM", "ncu may not read this GPU's performance counters (ERR_NVGPUCTRPERM)"));
            Ok(spec)
        }
    };
    let torch = match (&found.python, bundle.dir.join("reference/ch19_reference.py").is_file()) {
        (None, _) => Err("no Python interpreter".to_owned()),
        (_, false) => Err("the bundle has no reference/ch19_reference.py".to_owned()),
        (Some(python), true) => write_script(run, "torch_profile.py", include_str!("torch_profile.py")).map(|script| {
            let argv = [
                python.display().to_string(),
                script,
                format!("{}/reference", bundle.rel),
                model.into(),
                bs.to_string(),
                size.to_string(),
            ];
            let mut spec = Spec::new("profile/torch", argv.into(), cap * 0.4);
            (spec.kind, spec.python) = (Kind::Optional, true);
            spec
        }),
    }
    .map_err(|e| ("profile/torch".to_owned(), e));
    vec![ncu, torch]
}

/// train's flags: one epoch on the GPU with 14 loader workers, on the synthetic set the example generates when no
/// data is there; `TINY_TRAIN_ARGS` replaces them (a small set and image size where the GPU is the fake one).
pub const TRAIN_ARGS: &str = "--device cuda --epochs 1 --workers 14";

/// train: one epoch end to end, when the budget has the time for it.
pub fn train_spec(run: &Run, bundle: &Bundle) -> Result<Spec, String> {
    let need = plan::TRAIN_MIN * run.budget / plan::BUDGET;
    if run.left() < need {
        return Err(format!("only {:.0}s of the budget left; an epoch is given {need:.0}s at least", run.left()));
    }
    let args = std::env::var("TINY_TRAIN_ARGS").ok().filter(|a| !a.trim().is_empty());
    let mut argv = vec![bundle.exe("train")];
    argv.extend(args.as_deref().unwrap_or(TRAIN_ARGS).split_whitespace().map(String::from));
    Ok(Spec::new("train/epoch", argv, run.left()))
}

/// A command line: `program` and its `args`.
fn command(program: impl std::fmt::Display, args: &[&str]) -> Vec<String> {
    std::iter::once(program.to_string()).chain(args.iter().map(|a| a.to_string())).collect()
}

fn write_script(run: &Run, name: &str, text: &str) -> Result<String, String> {
    let path = run.work.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// The kernel tables from the profile steps' logs and figures.
pub fn read_kernels(run: &mut Run) {
    for n in 1..=run.summary.steps.len() {
        let step = &run.summary.steps[n - 1];
        let kernels = match step.name.as_str() {
            "profile/ncu" if step.status == Status::Passed => {
                let log = std::fs::read_to_string(run.step_log(n)).unwrap_or_default();
                run.summary.kernels.tiny = parse::ncu_kernels(&log);
                &run.summary.kernels.tiny
            }
            "profile/torch" => {
                run.summary.kernels.torch = parse::torch_kernels(&step.figures);
                &run.summary.kernels.torch
            }
            _ => continue,
        };
        let (calls, us): (u64, f64) = kernels.iter().fold((0, 0.0), |(c, t), k| (c + k.calls, t + k.total_us));
        if !kernels.is_empty() {
            run.summary.steps[n - 1].note =
                format!("{} kernels, {calls} launches, {us:.0} us of GPU time", kernels.len());
        }
    }
    let (model, bs, size) = PROFILED;
    run.summary.kernels.config = Some(format!("{model} bs{bs} {size}px TF32, one training step"));
    run.save();
}

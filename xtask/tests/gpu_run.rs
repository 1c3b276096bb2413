//! The GPU bundle's run.sh, run here around fake binaries (shell scripts that print a JSON line, fail, or sleep
//! past a shrunken timeout): summary.json is valid JSON with the right statuses whatever happens, a failure or a
//! timeout makes the exit status non-zero, and a run cut short leaves a summary that says so.
//!
//! Needs bash and coreutils' `timeout`; the tests that check Python's side also need python3 (a fake `torch`
//! module stands in for PyTorch). Each test says so and passes where they are missing.

#[path = "../src/gpu_bundle/script.rs"]
mod script;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn have(tool: &str) -> bool {
    Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the tools run.sh needs are here; says why not when they are not.
fn shell_ok(test: &str) -> bool {
    let ok = have("bash") && have("timeout");
    if !ok {
        eprintln!("{test}: skipped, no bash or no timeout here");
    }
    ok
}

fn python_ok(test: &str) -> bool {
    let ok = have("python3");
    if !ok {
        eprintln!("{test}: skipped, no python3 here");
    }
    ok
}

/// A repository with a bundle of fake binaries in `.device-bin/`, and the fake libraries, nvidia-smi and torch.
struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        let dir = std::env::temp_dir().join(format!("xtask-gpu-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = Bundle { dir };
        for d in
            ["repo/.device-bin/tests", "repo/.device-bin/reference", "repo/crates/a", "libs", "bin", "py/torch", "tmp"]
        {
            std::fs::create_dir_all(bundle.dir.join(d)).unwrap();
        }
        script::write_run_sh(&bundle.bin()).unwrap();
        // What the library step looks for: their names are enough.
        for lib in ["libcuda.so.1", "libnvrtc.so.13", "libcublas.so.13"] {
            std::fs::write(bundle.dir.join("libs").join(lib), "").unwrap();
        }
        bundle.exe(
            "bin/nvidia-smi",
            r#"case "$*" in *--query-gpu*) echo "Fake GPU, 580.65, 143771 MiB, 9.0";; *) echo "NVIDIA-SMI 580.65";; esac"#,
        );
        bundle.file("py/torch/__init__.py", TORCH);
        bundle.file(".device-bin/reference/bench_gpu.py", BENCH_GPU);
        bundle.exe(
            ".device-bin/tests/tiny-tensor-cuda",
            "echo 'running 3 tests'\necho 'test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out'",
        );
        bundle.exe(
            ".device-bin/bench_step",
            r#"echo "step ..."; echo "{\"model\":\"$4\",\"bs\":$6,\"device\":\"cuda:0\",\"ms_per_step\":3.100,\"img_per_s\":41290.3}""#,
        );
        bundle.exe(
            ".device-bin/train",
            r#"echo "0 true 1.2"; echo "{\"mode\":\"train\",\"device\":\"cuda:0\",\"valid_acc\":0.5,\"train_img_per_s\":1000.0,\"seconds\":3.2}""#,
        );
        // The sources the "binaries" were built from, as they are.
        bundle.file("crates/a/lib.rs", "fn main() {}\n");
        let hex: String = Sha256::digest(b"fn main() {}\n").iter().map(|b| format!("{b:02x}")).collect();
        bundle.file(".device-bin/sources.sha256", &format!("{hex}  crates/a/lib.rs\n"));
        bundle
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("repo/.device-bin")
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Writes a file at `rel`, under the repository unless it starts with libs/, bin/ or py/.
    fn file(&self, rel: &str, text: &str) {
        let top = ["libs/", "bin/", "py/"].iter().any(|p| rel.starts_with(p));
        let path = if top { self.dir.join(rel) } else { self.dir.join("repo").join(rel) };
        std::fs::write(path, text).unwrap();
    }

    /// Writes an executable shell script at `rel`.
    fn exe(&self, rel: &str, body: &str) {
        self.file(rel, &format!("#!/bin/sh\n{body}\n"));
        let path = if rel.starts_with("bin/") { self.dir.join(rel) } else { self.dir.join("repo").join(rel) };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// run.sh from outside the repository, with the fakes found first and `env` on top.
    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("bash");
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        c.arg(self.bin().join("run.sh"))
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("LD_LIBRARY_PATH", self.dir.join("libs"))
            .env("PYTHONPATH", self.dir.join("py"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("OUT", self.out())
            .env_remove("TINY_RUN_TIMEOUT")
            .env_remove("TINY_RUN_BUDGET")
            .env_remove("TINY_BENCH_CONFIGS")
            .env_remove("TINY_RUN_PYTHON");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, env: &[(&str, &str)]) -> (Output, Value) {
        let output = self.command(env).output().unwrap();
        let summary = summary(&self.out().join("summary.json"));
        (output, summary)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// summary.json, parsed: a test fails here when it is not valid JSON.
fn summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary.json is not valid JSON ({e}):\n{text}"))
}

fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {summary:#}"))
}

fn statuses(summary: &Value) -> Vec<(String, String)> {
    let steps = summary["steps"].as_array().unwrap();
    steps.iter().map(|s| (s["name"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned())).collect()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// A stand-in for PyTorch: what run.sh's check and bench_gpu.py's fake touch.
const TORCH: &str = r#"__version__ = "0.fake"
class version:
    cuda = "13.0"
class cuda:
    @staticmethod
    def is_available():
        return True
    @staticmethod
    def get_device_name(i=0):
        return "Fake GPU"
class backends:
    class cudnn:
        benchmark = False
"#;

/// bench_gpu.py's interface: `bench(model, bs, size, tf32, steps, warmup)` prints one JSON line.
const BENCH_GPU: &str = r#"import json
import torch
def bench(model_name, bs, size, tf32, steps=50, warmup=10):
    assert torch.backends.cudnn.benchmark
    print(json.dumps(dict(model=model_name, bs=bs, size=size, tf32=tf32, steps=steps, ms_per_step=2.5,
                          img_per_s=bs / 2.5e-3, torch=torch.__version__, gpu="Fake GPU")))
"#;

#[test]
fn the_script_parses() {
    if !shell_ok("the_script_parses") {
        return;
    }
    let b = Bundle::new("parse");
    let out = Command::new("bash").arg("-n").arg(b.bin().join("run.sh")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_run_where_everything_passes_exits_0_with_every_figure() {
    if !shell_ok("a_run_where_everything_passes") || !python_ok("a_run_where_everything_passes") {
        return;
    }
    let b = Bundle::new("pass");
    let (output, s) = b.run(&[]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert_eq!(
        (s["verdict"].as_str(), s["complete"].as_bool(), s["exit_status"].as_i64()),
        (Some("passed"), Some(true), Some(0))
    );
    for (name, status) in statuses(&s) {
        // The CUDA-graph rows have no PyTorch counterpart: the eager rows are the reference.
        let no_counterpart = name.starts_with("bench torch") && name.ends_with("-graph");
        assert_eq!(status, if no_counterpart { "skipped" } else { "passed" }, "{name} in {s:#}");
    }
    // Two fp32 and two TF32 configurations, each on both sides, with the very same numbers, and the four again
    // with --cuda-graph on tiny's side.
    let torch: Vec<&Value> = s["steps"].as_array().unwrap().iter().filter(|s| s["group"] == "bench-torch").collect();
    assert_eq!(torch.len(), 8);
    assert_eq!(torch.iter().filter(|s| s["status"] == "passed").count(), 4);
    let graph = step(&s, "bench tiny resnet18-bs128-128px-tf32-graph");
    assert!(graph["command"].as_str().unwrap().ends_with("--warmup 10 --cuda-graph --tf32"), "{graph:#}");
    let tiny = step(&s, "bench tiny resnet18-bs128-128px-tf32");
    assert!(
        tiny["command"]
            .as_str()
            .unwrap()
            .ends_with("--model resnet18 --bs 128 --size 128 --steps 30 --warmup 10 --tf32")
    );
    assert_eq!(tiny["figures"][0]["ms_per_step"], 3.1);
    let torch = &step(&s, "bench torch resnet18-bs128-128px-tf32")["figures"][0];
    assert_eq!(
        (torch["model"].as_str(), torch["bs"].as_i64(), torch["size"].as_i64()),
        (Some("resnet18"), Some(128), Some(128))
    );
    assert_eq!((torch["tf32"].as_bool(), torch["steps"].as_i64()), (Some(true), Some(30)));
    assert_eq!(step(&s, "bench torch simple_cnn-bs128-64px-fp32")["figures"][0]["tf32"], false);
    assert_eq!(step(&s, "test tiny-tensor-cuda")["tests"]["passed"], 3);
    assert_eq!(step(&s, "train")["figures"][0]["valid_acc"], 0.5);
    assert_eq!(step(&s, "nvidia-smi")["figures"][0]["gpu"], "Fake GPU");
    let libs = &step(&s, "libraries")["figures"][0];
    assert!(libs["libnvrtc"].as_str().unwrap().ends_with("libs/libnvrtc.so.13"), "{libs}");
    assert!(log.contains("tiny/torch 1.24") && log.contains("verdict: PASSED"), "{log}");
    // Three files, as the device tool brings back at most eight.
    let mut files: Vec<String> =
        std::fs::read_dir(b.out()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["logs.txt", "summary.json", "summary.txt"]);
    let logs = std::fs::read_to_string(b.out().join("logs.txt")).unwrap();
    assert!(logs.contains("test result: ok. 3 passed") && logs.contains("\"valid_acc\":0.5"), "{logs}");
}

#[test]
fn failures_and_timeouts_are_recorded_as_such_and_fail_the_run() {
    if !shell_ok("failures_and_timeouts") {
        return;
    }
    let b = Bundle::new("fail");
    b.exe(".device-bin/tests/tiny-nn-cuda", "echo 'test result: FAILED. 1 passed; 2 failed; 0 ignored'\nexit 101");
    b.exe(".device-bin/tests/tiny-optim-fused", "sleep 60");
    b.exe(".device-bin/train", "echo 'error: no GPU' >&2\nexit 1");
    b.file("crates/a/lib.rs", "fn main() { changed(); }\n");
    let start = Instant::now();
    let (output, s) = b.run(&[("TINY_RUN_TIMEOUT", "4"), ("TINY_RUN_PYTHON", "no-such-python")]);
    assert!(start.elapsed() < Duration::from_secs(50), "the timeout did not stop the sleeping test");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!((s["verdict"].as_str(), s["exit_status"].as_i64()), (Some("failed"), Some(1)));
    let failed = step(&s, "test tiny-nn-cuda");
    assert_eq!((failed["status"].as_str(), failed["exit"].as_i64()), (Some("failed"), Some(101)));
    assert_eq!((failed["tests"]["failed"].as_i64(), failed["timed_out"].as_bool()), (Some(2), Some(false)));
    let slow = step(&s, "test tiny-optim-fused");
    assert_eq!(
        (slow["status"].as_str(), slow["timed_out"].as_bool(), slow["exit"].as_i64()),
        (Some("timeout"), Some(true), Some(124))
    );
    assert!(slow["seconds"].as_f64().unwrap() >= 3.5, "{slow}");
    assert_eq!(step(&s, "test tiny-tensor-cuda")["status"], "passed");
    let train = step(&s, "train");
    assert_eq!((train["status"].as_str(), train["exit"].as_i64()), (Some("failed"), Some(1)));
    assert!(train["log_tail"].as_str().unwrap().contains("error: no GPU"));
    // The binaries were built from other sources than the tree's.
    assert_eq!(step(&s, "sources")["status"], "failed");
    let not_passed: Vec<&str> = s["not_passed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(not_passed, ["sources", "test tiny-nn-cuda", "test tiny-optim-fused", "train"]);
    assert!(text(&output).contains("verdict: FAILED"));
}

#[test]
fn without_python_the_figures_stay_as_strings_and_out_defaults_to_the_bundle() {
    if !shell_ok("without_python") {
        return;
    }
    let b = Bundle::new("nopython");
    // A line that is not strict JSON (NaN), with quotes, backslashes and a tab to escape.
    let line = "{\"model\":\"m\",\"ms_per_step\":NaN,\"note\":\"a \\\"quoted\\\"\ttab\"}";
    b.exe(".device-bin/bench_step", &format!("printf '%s\\n' '{line}'"));
    let mut command = b.command(&[("TINY_RUN_PYTHON", "no-such-python")]);
    command.env_remove("OUT");
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let s = summary(&b.bin().join("out/summary.json"));
    assert_eq!(s["python"], Value::Null);
    let tiny = step(&s, "bench tiny simple_cnn-bs128-64px-fp32");
    assert_eq!(tiny["figures"][0], line);
    let torch = step(&s, "bench torch simple_cnn-bs128-64px-fp32");
    assert_eq!(torch["status"], "skipped");
    assert!(torch["reason"].as_str().unwrap().contains("no-such-python"));
    assert!(step(&s, "libraries")["figures"][0].as_str().unwrap().contains("libcublas.so.13"));
}

#[test]
fn a_missing_torch_or_nvidia_smi_is_a_skip_and_a_missing_library_a_failure() {
    if !shell_ok("a_missing_torch") || !python_ok("a_missing_torch") {
        return;
    }
    let b = Bundle::new("missing");
    std::fs::remove_file(b.dir.join("bin/nvidia-smi")).unwrap();
    std::fs::remove_file(b.dir.join("py/torch/__init__.py")).unwrap();
    std::fs::remove_file(b.dir.join("libs/libcublas.so.13")).unwrap();
    // nvidia-smi must not be found elsewhere on this machine's PATH for this test to mean anything.
    if have("nvidia-smi") {
        eprintln!("a_missing_torch: skipped, this machine has an nvidia-smi");
        return;
    }
    let (output, s) =
        b.run(&[("TINY_BENCH_CONFIGS", "tiny-only simple_cnn 8 32 2 1 - -\nboth simple_cnn 8 32 2 1 - False")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(step(&s, "nvidia-smi")["status"], "skipped");
    let check = step(&s, "torch check");
    assert_eq!(check["status"], "skipped");
    assert!(check["reason"].as_str().unwrap().contains("torch"), "{check}");
    assert_eq!(step(&s, "bench torch both")["status"], "skipped");
    assert!(step(&s, "bench torch tiny-only")["reason"].as_str().unwrap().contains("no counterpart"));
    assert_eq!(
        step(&s, "bench tiny tiny-only")["command"],
        ".device-bin/bench_step --device cuda --model simple_cnn --bs 8 --size 32 --steps 2 --warmup 1"
    );
    // Unless this machine has a cuBLAS of its own somewhere run.sh looks.
    let libs = step(&s, "libraries");
    let found_elsewhere = !libs["figures"][0]["libcublas"].is_null();
    assert_eq!(libs["status"], if found_elsewhere { "passed" } else { "failed" }, "{libs}");
    let not_passed: Vec<&str> = s["not_passed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(not_passed, if found_elsewhere { vec![] } else { vec!["libraries"] });
}

#[test]
fn the_budget_leaves_out_what_cannot_fit_and_says_so() {
    if !shell_ok("the_budget") {
        return;
    }
    let b = Bundle::new("budget");
    b.exe(".device-bin/tests/tiny-optim-fused", "sleep 60");
    let (output, s) = b.run(&[("TINY_RUN_BUDGET", "6"), ("TINY_RUN_PYTHON", "no-such-python")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(step(&s, "test tiny-optim-fused")["status"], "timeout");
    let train = step(&s, "train");
    assert_eq!((train["status"].as_str(), train["exit"].as_i64()), (Some("not_run"), None));
    assert!(train["reason"].as_str().unwrap().contains("budget"));
    assert_eq!(step(&s, "bench tiny resnet18-bs128-128px-fp32")["status"], "not_run");
}

#[test]
fn a_run_cut_short_leaves_a_valid_summary_that_says_it_is_incomplete() {
    if !shell_ok("a_run_cut_short") {
        return;
    }
    let b = Bundle::new("cut");
    b.exe(".device-bin/tests/tiny-optim-fused", "sleep 30");
    let child = b.command(&[("TINY_RUN_PYTHON", "no-such-python")]).stdout(Stdio::piped()).spawn().unwrap();
    // While a step runs, summary.json is already whole, and says that the run is not over.
    let path = b.out().join("summary.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no running test step appeared in summary.json");
        if let Some(s) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
            && statuses(&s).contains(&("test tiny-optim-fused".to_owned(), "running".to_owned()))
        {
            assert_eq!((s["verdict"].as_str(), s["complete"].as_bool()), (Some("incomplete"), Some(false)));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("bash").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143));
    let s = summary(&path);
    assert_eq!((s["verdict"].as_str(), s["exit_status"].as_i64()), (Some("incomplete"), Some(143)));
    assert_eq!(step(&s, "test tiny-optim-fused")["status"], "running");
    assert!(String::from_utf8_lossy(&output.stdout).contains("verdict: INCOMPLETE"));
}

#[test]
fn the_binaries_see_the_gpu_required_the_fixtures_here_and_pips_libraries_on_the_path() {
    if !shell_ok("the_binaries_see") || !python_ok("the_binaries_see") {
        return;
    }
    let b = Bundle::new("env");
    // NVRTC only in a wheel's folder, as pip installs it; Python's sys.path lists it through PYTHONPATH.
    std::fs::remove_file(b.dir.join("libs/libnvrtc.so.13")).unwrap();
    let wheel = b.dir.join("py/site-packages/nvidia/cu13/lib");
    std::fs::create_dir_all(&wheel).unwrap();
    std::fs::write(wheel.join("libnvrtc.so.13"), "").unwrap();
    let pythonpath = format!("{}:{}", b.dir.join("py").display(), b.dir.join("py/site-packages").display());
    b.exe(
        ".device-bin/tests/tiny-tensor-cuda",
        "echo \"env: $TINY_REQUIRE_CUDA $TINY_CRATES_DIR $LD_LIBRARY_PATH\"\necho 'test result: ok. 1 passed; 0 failed'",
    );
    let (output, s) = b.run(&[("PYTHONPATH", &pythonpath)]);
    assert!(output.status.success(), "{}", text(&output));
    let libs = &step(&s, "libraries")["figures"][0];
    assert_eq!(libs["added"][0], wheel.to_str().unwrap(), "{libs}");
    assert_eq!(libs["libnvrtc"], wheel.join("libnvrtc.so.13").to_str().unwrap());
    let logs = std::fs::read_to_string(b.out().join("logs.txt")).unwrap();
    let crates = b.dir.join("repo/crates");
    let expected = format!("env: 1 {} {}:{}", crates.display(), wheel.display(), b.dir.join("libs").display());
    assert!(logs.contains(&expected), "{expected} not in\n{logs}");
}

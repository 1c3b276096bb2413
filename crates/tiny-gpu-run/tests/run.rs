//! The runner end to end around fake binaries (shell scripts that print what the real ones print, fail, or hang):
//! the phases in their order, summary.json valid at every moment, a hanging test that cannot push out the
//! benchmarks, a failed gate that stops the run, SIGTERM, the libraries' choice, and `--only` for a rerun.
//!
//! Needs sh and python3 (a fake `torch` module stands in for PyTorch); a test says so and passes without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether python3 is here; says why not when it is not.
fn python_ok(test: &str) -> bool {
    let ok = have("python3");
    if !ok {
        eprintln!("{test}: skipped, no python3 here");
    }
    ok
}

/// A repository with a bundle of fake binaries in `.device-bin/` (the real runner among them), and fake
/// libraries, tools and torch outside it.
struct Bundle {
    dir: PathBuf,
}

/// A stand-in for PyTorch: what torch_rows.py and torch_profile.py touch.
const TORCH: &str = r#"__version__ = "0.fake"
class version:
    cuda = "13.0"
class cuda:
    @staticmethod
    def is_available(): return True
    @staticmethod
    def get_device_name(i=0): return "Fake GPU"
    @staticmethod
    def synchronize(): pass
class backends:
    class cudnn:
        benchmark = False
        allow_tf32 = False
    class cuda:
        class matmul:
            allow_tf32 = False
def manual_seed(s): pass
def device(d): return d
class T:
    def backward(self): pass
def randn(*a, **k): return T()
def randint(*a, **k): return T()
"#;

const PROFILER: &str = r#"class ProfilerActivity:
    CUDA = 1
class E:
    def __init__(self, key, count, us): self.key, self.count, self.self_device_time_total = key, count, us
class Events(list):
    def table(self, sort_by=None, row_limit=None): return "fake profiler table"
class profile:
    def __init__(self, activities): pass
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def key_averages(self): return Events([E("cudnn_conv", 20, 800.0), E("elementwise", 100, 150.0), E("cpu", 1, 0.0)])
"#;

/// bench_gpu.py's interface: `bench(model, bs, size, tf32, steps, warmup, amp, channels_last)` prints one line.
const BENCH_GPU: &str = r#"import json
import torch
def bench(model_name, bs, size, tf32, steps=50, warmup=10, amp=None, channels_last=False):
    assert torch.backends.cudnn.benchmark
    print(json.dumps(dict(model=model_name, bs=bs, size=size, tf32=tf32, amp=amp, channels_last=channels_last,
                          ms_per_step=2.5, img_per_s=bs / 2.5e-3, torch=torch.__version__, gpu="Fake GPU")))
"#;

const REFERENCE: &str = r#"import torch
class M:
    def to(self, d): return self
    def train(self): return self
    def parameters(self): return []
    def __call__(self, x): return x
def get_model(name, n): return M()
def cross_entropy(p, y): return torch.T()
class SGD:
    def __init__(self, params, lr): pass
    def step(self): pass
"#;

impl Bundle {
    fn new(name: &str) -> Bundle {
        let dir = std::env::temp_dir().join(format!("gpu-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let b = Bundle { dir };
        for d in
            ["repo/.device-bin/tests", "repo/.device-bin/reference", "repo/crates/a", "libs", "bin", "py/torch", "tmp"]
        {
            std::fs::create_dir_all(b.dir.join(d)).unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_gpu-run"), b.bin().join("gpu-run")).unwrap();
        // What the library step looks for: their names are enough.
        for lib in ["libcuda.so.1", "libnvrtc.so.13", "libcublas.so.13"] {
            b.file(&format!("libs/{lib}"), "");
        }
        let smi = "Fake GPU, 580.65, 81559 MiB, 9.0, 345 MHz, 1980 MHz, 2619 MHz, 71.2 W, 700.00 W, 31, P0";
        b.exe(
            "bin/nvidia-smi",
            &format!("case \"$*\" in *--query-gpu*) echo '{smi}';; *) echo 'NVIDIA-SMI 580.65';; esac"),
        );
        b.exe(
            "bin/ncu",
            r#"case "$1" in --version) echo "NVIDIA (R) Nsight Compute 2025.3"; exit 0;; esac
echo '==PROF== Connected to process'
echo '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"'
echo '"0","im2col_f32","gpu__time_duration.sum","nsecond","4000"'
echo '"1","bn_affine_f32","gpu__time_duration.sum","nsecond","1000"'
echo '"2","im2col_f32","gpu__time_duration.sum","nsecond","2000"'"#,
        );
        b.exe(
            "bin/compute-sanitizer",
            r#"case "$1" in --version) echo "Compute Sanitizer 2025.3"; exit 0;; esac
while [ "${1#-}" != "$1" ]; do case "$1" in --print-limit|--tool|--error-exitcode) shift 2;; *) shift;; esac; done
"$@"; rc=$?; echo "========= ERROR SUMMARY: 0 errors"; exit $rc"#,
        );
        b.file("py/torch/__init__.py", TORCH);
        b.file("py/torch/profiler.py", PROFILER);
        b.file(".device-bin/reference/bench_gpu.py", BENCH_GPU);
        b.file(".device-bin/reference/ch19_reference.py", REFERENCE);
        for t in ["tiny-tensor-cuda", "tiny-tensor-graph", "tiny-nn-cuda", "tiny-optim-fused"] {
            b.test(t, "echo 'running 3 tests'\necho 'test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out'");
        }
        b.exe(
            ".device-bin/bench_step",
            r#"echo "step ..."; echo "{\"model\":\"$4\",\"bs\":$6,\"device\":\"cuda:0\",\"ms_per_step\":3.100,\"wall_ms\":3.2,\"img_per_s\":41290.3}""#,
        );
        b.exe(
            ".device-bin/train",
            r#"echo "{\"mode\":\"train\",\"device\":\"cuda:0\",\"valid_acc\":0.5,\"seconds\":3.2}""#,
        );
        // The sources the "binaries" were built from, as they are.
        b.file("crates/a/lib.rs", "fn main() {}\n");
        let hex: String = Sha256::digest(b"fn main() {}\n").iter().map(|x| format!("{x:02x}")).collect();
        b.file(".device-bin/sources.sha256", &format!("{hex}  crates/a/lib.rs\n"));
        b
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("repo/.device-bin")
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Writes a file at `rel`, under the repository unless it starts with libs/, bin/ or py/.
    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let top = ["libs/", "bin/", "py/"].iter().any(|p| rel.starts_with(p));
        let path = if top { self.dir.join(rel) } else { self.dir.join("repo").join(rel) };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes an executable shell script at `rel`.
    fn exe(&self, rel: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.file(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fake test binary of the bundle.
    fn test(&self, name: &str, body: &str) {
        self.exe(&format!(".device-bin/tests/{name}"), body);
    }

    /// The runner, started from outside the repository, with the fakes found first and `env` on top.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(self.bin().join("gpu-run"));
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        c.args(args)
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("LD_LIBRARY_PATH", self.dir.join("libs"))
            .env("PYTHONPATH", self.dir.join("py"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("OUT", self.out())
            .env("TINY_RUN_PYTHON", "python3")
            .env("TINY_RUN_BUDGET", "60")
            .env_remove("TINY_BENCH_CONFIGS");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
        let output =
            spawn(self.command(args, env).stdout(Stdio::piped()).stderr(Stdio::piped())).wait_with_output().unwrap();
        (output, summary(&self.out().join("summary.json")))
    }
}

/// Starts `command`, again while its file is busy: the tests of this file write and run executables at once, and
/// a process forked by one of them can hold another's new file open for a moment.
fn spawn(command: &mut Command) -> std::process::Child {
    for _ in 0..40 {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(50)),
            started => return started.unwrap(),
        }
    }
    panic!("{command:?} stayed busy")
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

fn step<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {s:#}"))
}

fn names_and_statuses(s: &Value) -> Vec<(String, String)> {
    let steps = s["steps"].as_array().unwrap();
    steps.iter().map(|x| (x["name"].as_str().unwrap().to_owned(), x["status"].as_str().unwrap().to_owned())).collect()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn a_run_where_everything_passes_goes_phase_by_phase_and_exits_0() {
    if !python_ok("a_run_where_everything_passes") {
        return;
    }
    let b = Bundle::new("pass");
    b.test("tiny-nn-cuda", "echo \"env: $TINY_REQUIRE_CUDA $TINY_CRATES_DIR $TINY_EXAMPLES_DIR\"\necho 'test result: ok. 1 passed; 0 failed'");
    let (output, s) = b.run(&[], &[]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert_eq!(
        (s["verdict"].as_str(), s["complete"].as_bool(), s["exit_status"].as_i64()),
        (Some("passed"), Some(true), Some(0))
    );
    // The phases in the issue's order, each step named after its phase.
    let phases: Vec<String> =
        names_and_statuses(&s).iter().map(|(n, _)| n.split('/').next().unwrap().to_owned()).collect();
    let mut order = phases.clone();
    order.dedup();
    assert_eq!(order, ["probe", "gate", "parity", "bench", "torch", "tests", "memcheck", "profile", "train"]);
    for (name, status) in names_and_statuses(&s) {
        assert_eq!(status, "passed", "{name} in {s:#}");
    }
    assert_eq!(step(&s, "parity/tiny-tensor-cuda")["tests"]["passed"], 3);
    assert_eq!(step(&s, "probe/nvidia-smi")["figures"][0]["sm_clock_max"], "1980 MHz");
    assert!(step(&s, "probe/libraries")["figures"][0]["libnvrtc"].as_str().unwrap().ends_with("libs/libnvrtc.so.13"));
    assert!(step(&s, "probe/tools")["figures"][0]["ncu"]["version"].as_str().unwrap().contains("Nsight Compute"));
    assert_eq!(step(&s, "train/epoch")["figures"][0]["valid_acc"], 0.5);

    // tiny beside PyTorch on the same rows; the repeat of the first row and the graph rows have no torch side.
    let bench = s["bench"].as_array().unwrap();
    assert_eq!(bench.len(), 13);
    let first = &bench[0];
    assert_eq!(
        (first["config"].as_str(), first["tiny_ms"].as_f64(), first["torch_ms"].as_f64()),
        (Some("resnet18-bs128-128px-tf32"), Some(3.1), Some(2.5))
    );
    assert_eq!(first["ratio"], 1.28);
    assert_eq!(bench[12]["config"], "resnet18-bs128-128px-tf32 (again)");
    let torch = &step(&s, "torch/rows")["figures"];
    let bf16 = torch.as_array().unwrap().iter().find(|f| f["config"] == "resnet18-bs128-128px-bf16").unwrap();
    assert_eq!(
        (bf16["amp"].as_str(), bf16["channels_last"].as_bool(), bf16["tf32"].as_bool()),
        (Some("bf16"), Some(true), Some(true))
    );
    assert_eq!(torch.as_array().unwrap().len(), 7, "one line about torch, then its six rows");
    assert!(
        step(&s, "bench/resnet18-bs128-128px-bf16-graph")["command"]
            .as_str()
            .unwrap()
            .ends_with("--precision bf16 --tf32 --cuda-graph")
    );
    // The kernels of one step on each side.
    assert_eq!(s["kernels"]["tiny"][0]["name"], "im2col_f32");
    assert_eq!(
        (s["kernels"]["tiny"][0]["calls"].as_u64(), s["kernels"]["tiny"][0]["total_us"].as_f64()),
        (Some(2), Some(6.0))
    );
    assert_eq!(s["kernels"]["torch"].as_array().unwrap().len(), 2);
    assert!(step(&s, "memcheck/tiny-tensor-cuda")["command"].as_str().unwrap().contains("--tool memcheck"));

    let mut files: Vec<String> =
        std::fs::read_dir(b.out()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(
        files,
        ["bench.log", "parity.log", "setup.log", "summary.json", "summary.txt", "tests.log", "tools.log", "train.log"]
    );
    let tests_log = std::fs::read_to_string(b.out().join("tests.log")).unwrap();
    let expected = format!("env: 1 {} {}", b.dir.join("repo/crates").display(), b.bin().display());
    assert!(tests_log.contains(&expected), "{expected} not in\n{tests_log}");
    let summary_txt = std::fs::read_to_string(b.out().join("summary.txt")).unwrap();
    for want in ["verdict: PASSED", "1.28", "noise: resnet18-bs128-128px-tf32 ran twice", "im2col_f32", "cudnn_conv"] {
        assert!(summary_txt.contains(want), "{want} not in\n{summary_txt}");
    }
}

#[test]
fn a_hanging_test_cannot_push_out_the_benchmarks() {
    if !python_ok("a_hanging_test") {
        return;
    }
    let b = Bundle::new("hang");
    let pid_file = b.dir.join("sleep.pid");
    b.test("tiny-tensor-graph", &format!("sleep 600 & echo $! > {}\nwait", pid_file.display()));
    let start = Instant::now();
    // A 40 s budget: the parity phase's cap is 7.5 s.
    let (output, s) = b.run(&[], &[("TINY_RUN_BUDGET", "40")]);
    assert!(start.elapsed() < Duration::from_secs(30), "the hanging test held the run up");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let hung = step(&s, "parity/tiny-tensor-graph");
    assert_eq!((hung["status"].as_str(), hung["timed_out"].as_bool()), (Some("timeout"), Some(true)), "{hung}");
    assert!(hung["seconds"].as_f64().unwrap() >= 7.0, "{hung}");
    assert_eq!(step(&s, "parity/tiny-tensor-cuda")["status"], "passed");
    for (name, status) in names_and_statuses(&s) {
        if name.starts_with("bench/") || name.starts_with("torch/") {
            assert_eq!(status, "passed", "{name}");
        }
    }
    assert_eq!(s["not_passed"], serde_json::json!(["parity/tiny-tensor-graph"]));
    // Everything the hanging binary started went with it.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z"), "{state}");
    assert_eq!(s["rerun"], "bash .device-bin/run.sh --only parity/tiny-tensor-graph");
}

#[test]
fn failures_are_recorded_as_such_and_a_refused_benchmark_row_fails_clearly() {
    if !python_ok("failures_are_recorded") {
        return;
    }
    let b = Bundle::new("fail");
    b.test("tiny-nn-cuda", "echo 'test result: FAILED. 1 passed; 2 failed; 0 ignored'\nexit 101");
    b.test(
        "tiny-optim-fused",
        "echo 't: skipped, no usable CUDA GPU (none)'\necho 'test result: ok. 1 passed; 0 failed'",
    );
    b.exe(".device-bin/train", "echo 'error: no GPU' >&2\nexit 1");
    // A bench_step that refuses bf16 (as one built before --precision bf16 did).
    b.exe(
        ".device-bin/bench_step",
        r#"case "$*" in *"--precision bf16"*) echo "error: invalid value 'bf16' for '--precision <PRECISION>'" >&2; exit 2;; esac
echo "{\"ms_per_step\":3.1,\"wall_ms\":3.2,\"img_per_s\":1.0}""#,
    );
    b.file("crates/a/lib.rs", "fn main() { changed(); }\n");
    let (output, s) = b.run(&[], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!((s["verdict"].as_str(), s["exit_status"].as_i64()), (Some("failed"), Some(1)));
    let failed = step(&s, "tests/tiny-nn-cuda");
    assert_eq!(
        (failed["status"].as_str(), failed["exit"].as_i64(), failed["tests"]["failed"].as_i64()),
        (Some("failed"), Some(101), Some(2))
    );
    let skipped = step(&s, "tests/tiny-optim-fused");
    assert!(skipped["reason"].as_str().unwrap().contains("TINY_REQUIRE_CUDA=1"), "{skipped}");
    assert!(step(&s, "train/epoch")["log_tail"].as_str().unwrap().contains("error: no GPU"));
    assert_eq!(step(&s, "probe/sources")["status"], "failed");
    let bf16 = step(&s, "bench/resnet18-bs128-128px-bf16");
    assert!(bf16["log_tail"].as_str().unwrap().contains("invalid value 'bf16'"), "{bf16}");
    let not_passed: Vec<&str> = s["not_passed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(not_passed.len(), 4 + 4, "{not_passed:?}");
    let summary_txt = std::fs::read_to_string(b.out().join("summary.txt")).unwrap();
    assert!(
        summary_txt.contains("verdict: FAILED") && summary_txt.contains("bash .device-bin/run.sh"),
        "{summary_txt}"
    );
    let lines: Vec<&str> = summary_txt.lines().filter(|l| l.contains("simple_cnn-bs128-64px-bf16 ")).collect();
    assert_eq!(lines.len(), 2, "the step and its row of the table: {summary_txt}");
    assert!(lines[0].contains("failed"), "{lines:?}");
}

#[test]
fn a_failed_gate_stops_the_run_and_says_what_the_probe_found() {
    let b = Bundle::new("gate");
    b.exe(".device-bin/bench_step", "echo 'Error: DeviceUnavailable: NVRTC (libnvrtc) was not found' >&2\nexit 1");
    let start = Instant::now();
    let (output, s) = b.run(&[], &[("TINY_RUN_PYTHON", "no-such-python")]);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1));
    let log = text(&output);
    assert!(log.contains("the gate failed") && log.contains("libnvrtc: using"), "{log}");
    assert_eq!(step(&s, "gate/step")["status"], "failed");
    let after: Vec<(String, String)> =
        names_and_statuses(&s).into_iter().skip_while(|(n, _)| n != "gate/step").skip(1).collect();
    assert!(after.len() > 15, "{after:?}");
    assert!(after.iter().all(|(_, st)| st == "not_run"), "{after:?}");
    assert_eq!(s["rerun"], "bash .device-bin/run.sh");
}

#[test]
fn sigterm_stops_the_run_and_leaves_a_valid_incomplete_summary() {
    let b = Bundle::new("term");
    b.test("tiny-tensor-graph", "sleep 60");
    let child = spawn(b.command(&[], &[("TINY_RUN_PYTHON", "no-such-python")]).stdout(Stdio::piped()));
    let path = b.out().join("summary.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no running parity step appeared in summary.json");
        if let Some(s) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
            && names_and_statuses(&s).contains(&("parity/tiny-tensor-graph".to_owned(), "running".to_owned()))
        {
            assert_eq!((s["verdict"].as_str(), s["complete"].as_bool()), (Some("incomplete"), Some(false)));
            // The gate's log is already under $OUT.
            assert!(std::fs::read_to_string(b.out().join("setup.log")).unwrap().contains("===== gate/step: passed"));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143));
    let s = summary(&path);
    assert_eq!((s["verdict"].as_str(), s["exit_status"].as_i64()), (Some("incomplete"), Some(143)));
    assert_eq!(step(&s, "parity/tiny-tensor-graph")["status"], "interrupted");
    assert_eq!(step(&s, "train/epoch")["status"], "not_run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("verdict: INCOMPLETE"));
}

#[test]
fn missing_tools_are_skips_and_a_missing_library_is_a_failure() {
    let b = Bundle::new("missing");
    for tool in ["nvidia-smi", "ncu", "compute-sanitizer"] {
        std::fs::remove_file(b.dir.join("bin").join(tool)).unwrap();
        // The fakes must not be found elsewhere for this test to mean anything.
        if have(tool) {
            eprintln!("missing_tools: skipped, this machine has a {tool}");
            return;
        }
    }
    std::fs::remove_file(b.dir.join("libs/libcublas.so.13")).unwrap();
    let (output, s) = b.run(&[], &[("TINY_RUN_PYTHON", "no-such-python")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    for name in ["probe/nvidia-smi", "torch/rows", "memcheck/tiny-tensor-cuda", "profile/ncu", "profile/torch"] {
        assert_eq!(step(&s, name)["status"], "skipped", "{name}");
    }
    assert!(step(&s, "torch/rows")["reason"].as_str().unwrap().contains("no Python"));
    let libs = step(&s, "probe/libraries");
    // Unless this machine has a cuBLAS of its own somewhere the runner looks.
    let found_elsewhere = !libs["figures"][0]["libcublas"].is_null();
    assert_eq!(libs["status"], if found_elsewhere { "passed" } else { "failed" }, "{libs}");
}

#[test]
fn the_libraries_are_cuda_13_where_there_is_one_and_never_a_stub() {
    if !python_ok("the_libraries") {
        return;
    }
    let b = Bundle::new("libs");
    // On LD_LIBRARY_PATH: a stub libcuda first, then the driver's; a CUDA 12 NVRTC. In a wheel: NVRTC 13.
    std::fs::remove_file(b.dir.join("libs/libnvrtc.so.13")).unwrap();
    b.file("stubs/libcuda.so", "");
    b.file("cuda12/libnvrtc.so.12", "");
    let wheel = b.dir.join("py/site-packages/nvidia/cu13/lib");
    b.file("py/site-packages/nvidia/cu13/lib/libnvrtc.so.13", "");
    let ld = format!(
        "{}:{}:{}",
        b.dir.join("repo/stubs").display(),
        b.dir.join("libs").display(),
        b.dir.join("repo/cuda12").display()
    );
    let pythonpath = format!("{}:{}", b.dir.join("py").display(), b.dir.join("py/site-packages").display());
    b.test("tiny-tensor-cuda", "first=${LD_LIBRARY_PATH%%:*}\necho \"nvrtc: $(readlink \"$first/libnvrtc.so\") cuda: $(readlink \"$first/libcuda.so\")\"\necho 'test result: ok. 1 passed; 0 failed'");
    let (output, s) =
        b.run(&["--only", "parity/tiny-tensor-cuda"], &[("LD_LIBRARY_PATH", &ld), ("PYTHONPATH", &pythonpath)]);
    assert!(output.status.success(), "{}", text(&output));
    let libs = &step(&s, "probe/libraries")["figures"][0];
    assert_eq!(libs["libnvrtc"], wheel.join("libnvrtc.so.13").to_str().unwrap(), "{libs}");
    assert_eq!(libs["libcuda"], b.dir.join("libs/libcuda.so.1").to_str().unwrap(), "{libs}");
    assert_eq!(libs["refused"][0], b.dir.join("repo/stubs/libcuda.so").to_str().unwrap());
    let parity = std::fs::read_to_string(b.out().join("parity.log")).unwrap();
    let expected = format!(
        "nvrtc: {} cuda: {}",
        wheel.join("libnvrtc.so.13").display(),
        b.dir.join("libs/libcuda.so.1").display()
    );
    assert!(parity.contains(&expected), "{expected} not in\n{parity}");
}

#[test]
fn only_runs_the_steps_named_with_the_probe_and_the_gate() {
    let b = Bundle::new("only");
    let (output, s) =
        b.run(&["--only", "bench/simple_cnn-bs128-64px-tf32,tests/"], &[("TINY_RUN_PYTHON", "no-such-python")]);
    assert!(output.status.success(), "{}", text(&output));
    let ran: Vec<String> =
        names_and_statuses(&s).into_iter().filter(|(_, st)| st == "passed").map(|(n, _)| n).collect();
    assert_eq!(
        ran,
        [
            "probe/sources",
            "probe/nvidia-smi",
            "probe/libraries",
            "probe/tools",
            "gate/step",
            "bench/simple_cnn-bs128-64px-tf32",
            "bench/simple_cnn-bs128-64px-tf32-graph",
            "tests/tiny-nn-cuda",
            "tests/tiny-optim-fused",
        ]
    );
    assert_eq!(step(&s, "parity/tiny-tensor-cuda")["reason"], "not asked for (--only)");
    let bad = spawn(Command::new(b.bin().join("gpu-run")).arg("--no-such-flag").stderr(Stdio::piped()))
        .wait_with_output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_payload_is_unpacked_for_the_run_and_removed_after_it() {
    let b = Bundle::new("payload");
    // What cargo xtask gpu-bundle does: everything the runner runs in one gzip'd tar, the files gone.
    let file = std::fs::File::create(b.bin().join("payload.tar.gz")).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let names = ["bench_step", "train", "tests/tiny-tensor-cuda", "tests/tiny-nn-cuda"];
    for name in names {
        tar.append_path_with_name(b.bin().join(name), name).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    std::fs::remove_dir_all(b.bin().join("tests")).unwrap();
    for name in ["bench_step", "train"] {
        std::fs::remove_file(b.bin().join(name)).unwrap();
    }
    let (output, s) = b.run(&["--only", "parity/,tests/"], &[("TINY_RUN_PYTHON", "no-such-python")]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("unpacked 4 files"), "{}", text(&output));
    for name in ["gate/step", "parity/tiny-tensor-cuda", "tests/tiny-nn-cuda"] {
        assert_eq!(step(&s, name)["status"], "passed", "{name}");
    }
    // The bundle is again what was carried: what was unpacked is gone, the payload is there.
    let mut left: Vec<String> =
        std::fs::read_dir(b.bin()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["gpu-run", "payload.tar.gz", "reference", "sources.sha256"]);
}

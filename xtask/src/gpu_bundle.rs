//! `cargo xtask gpu-bundle`: builds the CUDA tests and examples here and packs them, with a run script, into
//! `.device-bin/` for a GPU machine that has no cargo (pass that folder in the device tool's `carry`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask gpu-bundle [--reference DIR]

Builds, in release mode with the `cuda` feature, the device tests of tiny-tensor, tiny-nn and tiny-learner and the
bench_step and train examples, strips them, and copies them into .device-bin/ with run.sh. On the GPU
machine, from the repository root: `bash .device-bin/run.sh`. With --reference (default
../shared/reference when it exists) the PyTorch reference scripts are copied too, so that run.sh can time
PyTorch side by side.";

/// The script the GPU machine runs: device tests, then timings beside PyTorch, then one epoch end to end.
const RUN_SH: &str = r#"#!/usr/bin/env bash
# tiny's CUDA checks on a GPU machine; run from the repository root: bash .device-bin/run.sh
set -u
bin="$(dirname "$0")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
status=0
# On a GPU machine a device test that cannot open the GPU fails, naming why, instead of passing as a skip.
export TINY_REQUIRE_CUDA=1
for t in "$bin"/tests/*; do
  echo "== $(basename "$t")"
  "$t" --test-threads=1 || status=1
done
echo "== bench_step (tiny) and bench_gpu.py (PyTorch), same machine, same call"
for tf in "" --tf32; do
  "$bin"/bench_step --device cuda --model simple_cnn --bs 128 --size 64 --steps 50 --warmup 10 $tf
  "$bin"/bench_step --device cuda --model resnet18 --bs 128 --size 128 --steps 30 --warmup 5 $tf
done
if [ -f "$bin/reference/bench_gpu.py" ]; then timeout 240 python3 "$bin/reference/bench_gpu.py" || true; fi
echo "== one epoch on the synthetic set, on the GPU"
timeout 300 "$bin"/train --device cuda --epochs 1 --workers 14 || status=1
exit $status
"#;

pub fn run(args: &[String], root: &Path) -> anyhow::Result<()> {
    let mut reference = Some(root.join("../shared/reference"));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reference" => reference = Some(PathBuf::from(it.next().context("--reference needs a folder")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    let out = root.join(".device-bin");
    let tests = out.join("tests");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&tests)?;

    let test_build = cargo(root, &["test", "--release", "-p", "tiny-tensor", "-p", "tiny-nn", "-p", "tiny-learner"])
        .args(["--features", "tiny-learner/cuda", "--lib", "--test", "cuda", "--no-run", "--message-format=json"])
        .output()
        .context("running cargo test --no-run")?;
    if !test_build.status.success() {
        bail!("building the CUDA tests failed:\n{}", String::from_utf8_lossy(&test_build.stderr));
    }
    for line in String::from_utf8_lossy(&test_build.stdout).lines() {
        // Each test binary is a `"executable":"/path"` entry of a compiler-artifact message.
        let Some(rest) = line.split("\"executable\":\"").nth(1) else { continue };
        let exe = PathBuf::from(rest.split('"').next().unwrap_or_default());
        // Named package-target, e.g. tiny-tensor-lib and tiny-tensor-cuda: the package is the folder in
        // `"package_id":"path+file:///.../crates/tiny-tensor#0.1.0"`.
        let package = line.split("/crates/").nth(1).and_then(|r| r.split('#').next()).unwrap_or("test");
        let target = if line.contains("\"kind\":[\"lib\"]") { "lib" } else { "cuda" };
        copy_stripped(&exe, &tests.join(format!("{package}-{target}")))?;
    }
    for (package, example) in [("tiny-nn", "bench_step"), ("tiny-learner", "train")] {
        let status = cargo(root, &["build", "--release", "-p", package, "--features", "cuda", "--example", example])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("building the {example} example with --features cuda failed");
        }
        copy_stripped(&root.join("target/release/examples").join(example), &out.join(example))?;
    }
    if let Some(dir) = reference.filter(|d| d.join("bench_gpu.py").is_file()) {
        std::fs::create_dir_all(out.join("reference"))?;
        for f in ["bench_gpu.py", "ch19_reference.py"] {
            std::fs::copy(dir.join(f), out.join("reference").join(f))?;
        }
    }
    std::fs::write(out.join("run.sh"), RUN_SH)?;
    println!("wrote {} (run on the GPU machine: bash .device-bin/run.sh)", out.display());
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).args(args);
    c
}

/// Copies a binary without its debug information (the device tool carries at most 64 MiB).
fn copy_stripped(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    // `strip` is a convenience; an unstripped binary still runs.
    let _ = Command::new("strip").arg("--strip-debug").arg(to).status();
    Ok(())
}

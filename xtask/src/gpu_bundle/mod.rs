//! `cargo xtask gpu-bundle`: builds the CUDA tests and examples here and packs them, with the runner that runs
//! them, into `.device-bin/` for a GPU machine that has no cargo (pass that folder in the device tool's `carry`).
//!
//! The bundle holds `gpu-run` (the runner, `crates/tiny-gpu-run`) and `run.sh` (which starts it); `payload.tar.gz`,
//! which the runner unpacks first: `tests/<package>-<target>` (one stripped test binary per test target with device
//! code, `lib` for a crate's unit tests), `bench_step` and `train`; `reference/` (PyTorch's side, copied when
//! `../shared/reference` exists), `sources.sha256` (the sources the binaries were built from, which the runner
//! checks first) and `bundle.json` (commit, sizes).

mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;
use sha2::Sha256;
use xtask::flags::{Flags, Token};

const USAGE: &str = "\
usage: cargo xtask gpu-bundle [--reference DIR]

Builds, in release mode with the `cuda` feature, the device tests of tiny-tensor (unit tests, cuda, values,
gradients, torch_fixtures, warp, foreach, kernel_cache, graph), tiny-nn and tiny-learner (cuda) and tiny-optim
(fused), the bench_step and train examples, and the runner gpu-run (crates/tiny-gpu-run); strips them, packs all
but the runner into .device-bin/payload.tar.gz (the runner unpacks it), and writes beside them run.sh, the list of
the sources they were built from, and, from --reference DIR (default ../shared/reference when it exists),
PyTorch's bench_gpu.py and ch19_reference.py. On the GPU machine, from anywhere: `bash .device-bin/run.sh`
(`--help` lists its flags, `--list` its phases). The bundle must stay under 40 MiB: the device tool carries
64 MiB, working tree included.";

/// The test binaries of the bundle: each package with its test targets (`--lib` for its unit tests). Only the
/// targets with device code: tiny-nn's and tiny-learner's unit tests have none (the CPU runs them in CI).
const TESTS: &[(&str, &[&str])] = &[
    (
        "tiny-tensor",
        &["--lib", "cuda", "values", "gradients", "torch_fixtures", "warp", "foreach", "kernel_cache", "graph"],
    ),
    ("tiny-nn", &["cuda"]),
    ("tiny-learner", &["cuda"]),
    ("tiny-optim", &["fused"]),
];

/// The examples of the bundle, by package.
const EXAMPLES: &[(&str, &str)] = &[("tiny-nn", "bench_step"), ("tiny-learner", "train")];

/// The runner: its package and binary.
const RUNNER: (&str, &str) = ("tiny-gpu-run", "gpu-run");

/// The most the bundle may weigh, so that the working tree (and what the bf16 work adds) still fits beside it.
const MAX_BUNDLE: u64 = 40 << 20;

/// The most the device tool carries: the working tree and the bundle together.
const MAX_CARRIED: u64 = 64 << 20;

/// What the runner's first step checks: the files whose change would make the binaries stale, or the fixtures wrong.
const SOURCES: &[&str] = &["crates", "Cargo.toml", "Cargo.lock"];

pub fn run(args: &[String], root: &Path) -> anyhow::Result<()> {
    let mut reference = Some(root.join("../shared/reference"));
    let mut flags = Flags::new(args);
    while let Some(token) = flags.next_token() {
        match token {
            Token::Help => {
                println!("{USAGE}");
                return Ok(());
            }
            Token::Flag("--reference") => reference = Some(PathBuf::from(flags.value("--reference")?)),
            Token::Flag(other) | Token::Unknown(other) | Token::Positional(other) => {
                bail!("unknown option {other}\n\n{USAGE}")
            }
        }
    }

    // Everything is built before the old bundle is touched, so that a failed build leaves it as it was.
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for &(package, targets) in TESTS {
        let mut cargo = cargo(root, &["test", "--release", "-p", package, "--features", "cuda", "--no-run"]);
        cargo.args(targets.iter().flat_map(|&t| if t == "--lib" { vec![t] } else { vec!["--test", t] }));
        let built = build(cargo, &format!("the {package} tests"))?;
        for &t in targets {
            let want = t.trim_start_matches("--");
            let found = built.iter().find(|a| a.package == package && a.profile_test && a.bundle_target() == want);
            let Some(artifact) = found else { bail!("cargo built no test binary for {package} {t}") };
            files.push((artifact.executable.clone(), format!("tests/{package}-{want}")));
        }
    }
    for &(package, example) in EXAMPLES {
        let cargo = cargo(root, &["build", "--release", "-p", package, "--features", "cuda", "--example", example]);
        let built = build(cargo, &format!("the {example} example"))?;
        let found = built.iter().find(|a| a.kinds.iter().any(|k| k == "example") && a.target == example);
        let Some(artifact) = found else { bail!("cargo built no {example} example binary") };
        files.push((artifact.executable.clone(), example.to_owned()));
    }
    let (package, bin) = RUNNER;
    let runner = build(cargo(root, &["build", "--release", "-p", package, "--bin", bin]), "the runner")?;
    let found = runner.iter().find(|a| a.kinds.iter().any(|k| k == "bin") && a.target == bin);
    let Some(artifact) = found else { bail!("cargo built no {bin} binary") };
    files.push((artifact.executable.clone(), bin.to_owned()));
    let names: BTreeSet<&str> = files.iter().map(|(_, name)| name.as_str()).collect();
    if names.len() != files.len() {
        bail!("two binaries of the bundle have the same name: {files:?}");
    }

    let out = root.join(".device-bin");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    // Without debug information, packed; without symbols too when that is still too heavy (panics then name no
    // functions, but the bundle travels).
    let mut payload = BTreeMap::new();
    for how in ["--strip-debug", "--strip-all"] {
        std::fs::create_dir_all(out.join("tests"))?;
        let mut packed = Vec::new();
        for (from, name) in &files {
            let to = out.join(name);
            std::fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
            strip(&to, how);
            if name != RUNNER.1 {
                packed.push(name.clone());
            }
        }
        payload = pack(&out, &packed)?;
        if bundle_bytes(&out)? <= MAX_BUNDLE {
            break;
        }
    }
    if let Some(dir) = reference.filter(|d| d.join("bench_gpu.py").is_file()) {
        std::fs::create_dir_all(out.join("reference"))?;
        for f in ["bench_gpu.py", "ch19_reference.py"] {
            std::fs::copy(dir.join(f), out.join("reference").join(f))
                .with_context(|| format!("copying {}", dir.join(f).display()))?;
        }
    } else {
        println!(
            "no ../shared/reference/bench_gpu.py (see --reference): the runner will time tiny without PyTorch beside it"
        );
    }
    std::fs::write(out.join("sources.sha256"), sources_sha256(root)?)?;
    script::write_run_sh(&out)?;
    std::fs::write(out.join("bundle.json"), bundle_json(root, &out, &payload)?)?;

    let listing = listing(&out)?;
    let total: u64 = listing.iter().map(|(_, n)| n).sum();
    for (name, bytes) in &listing {
        println!("{:>8.2} MiB  {name}", *bytes as f64 / 1048576.0);
    }
    println!("{:>8.2} MiB  in all, in {}", total as f64 / 1048576.0, out.display());
    if total > MAX_BUNDLE {
        bail!(
            "{} is {:.1} MiB, over the {} MiB it may weigh (the device tool carries at most 64 MiB, working tree \
             included): leave a test binary out or make the binaries smaller",
            out.display(),
            total as f64 / 1048576.0,
            MAX_BUNDLE >> 20
        );
    }
    if let Some(tree) = working_tree_bytes(root)
        && tree + total > MAX_CARRIED
    {
        bail!(
            "the working tree ({:.1} MiB) and {} ({:.1} MiB) are together over the 64 MiB the device tool carries",
            tree as f64 / 1048576.0,
            out.display(),
            total as f64 / 1048576.0
        );
    }
    println!("run it on the GPU machine with `bash .device-bin/run.sh` (carry .device-bin; see the README)");
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).args(args).arg("--message-format=json-render-diagnostics");
    c
}

/// Runs a cargo build (its messages and errors go to the terminal) and returns the executables it produced.
fn build(mut cargo: Command, what: &str) -> anyhow::Result<Vec<Artifact>> {
    let output = cargo.stderr(Stdio::inherit()).stdout(Stdio::piped()).output().context("running cargo")?;
    if !output.status.success() {
        bail!("building {what} with --features cuda failed");
    }
    Ok(artifacts(&String::from_utf8_lossy(&output.stdout)))
}

/// An executable that cargo built, from one of its `compiler-artifact` messages.
#[derive(Debug, Clone, PartialEq)]
struct Artifact {
    package: String,
    /// The target's name: `tiny_tensor` for the unit tests of tiny-tensor, `cuda` for `tests/cuda.rs`.
    target: String,
    /// The target's kinds: `lib`, `test`, `example`, ...
    kinds: Vec<String>,
    /// Whether it was built as a test harness.
    profile_test: bool,
    executable: PathBuf,
}

impl Artifact {
    /// The target's name in the bundle: `lib` for a library's unit tests, else the target's own name.
    fn bundle_target(&self) -> &str {
        let lib = ["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"];
        if self.kinds.iter().any(|k| lib.contains(&k.as_str())) { "lib" } else { &self.target }
    }
}

/// The executables among cargo's JSON messages (one per line; other lines are left alone).
fn artifacts(messages: &str) -> Vec<Artifact> {
    let mut found = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(package)) = (message["executable"].as_str(), message["package_id"].as_str()) else {
            continue;
        };
        let target = &message["target"];
        found.push(Artifact {
            package: package_name(package).to_owned(),
            target: target["name"].as_str().unwrap_or_default().to_owned(),
            kinds: target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect(),
            profile_test: message["profile"]["test"].as_bool().unwrap_or(false),
            executable: PathBuf::from(exe),
        });
    }
    found
}

/// The package's name in a cargo package id: `path+file:///ws/crates/tiny-nn#0.1.0` (the folder is the name),
/// `path+file:///ws/crates/nn#tiny-nn@0.1.0`, or the older `tiny-nn 0.1.0 (path+file:///ws/crates/nn)`.
fn package_name(id: &str) -> &str {
    if id.contains(' ') {
        return id.split(' ').next().unwrap_or(id);
    }
    match id.rsplit_once('#') {
        Some((_, fragment)) if fragment.contains('@') => fragment.split('@').next().unwrap_or(fragment),
        Some((url, _)) => url.rsplit('/').next().unwrap_or(url),
        None => id,
    }
}

/// Strips a binary in place; a missing `strip` only costs size, which the size check then catches.
fn strip(path: &Path, how: &str) {
    match Command::new("strip").arg(how).arg(path).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: strip {how} {} failed ({s})", path.display()),
        Err(e) => eprintln!("warning: could not run strip on {}: {e}", path.display()),
    }
}

/// The runner's payload (`crates/tiny-gpu-run/src/payload.rs` unpacks it): what the runner runs, in one gzip'd
/// tar. Stripped binaries that share most of their code compress to about a third.
const PAYLOAD: &str = "payload.tar.gz";

/// Packs `names` (paths in `out`) into [`PAYLOAD`] in `out`, removes them there, and returns their sizes.
fn pack(out: &Path, names: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    let file = std::fs::File::create(out.join(PAYLOAD)).with_context(|| format!("creating {PAYLOAD}"))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::best()));
    let mut sizes = BTreeMap::new();
    for name in names {
        tar.append_path_with_name(out.join(name), name).with_context(|| format!("packing {name}"))?;
        sizes.insert(name.clone(), std::fs::metadata(out.join(name))?.len());
    }
    tar.into_inner()?.finish()?;
    for name in names {
        std::fs::remove_file(out.join(name))?;
    }
    let _ = std::fs::remove_dir(out.join("tests"));
    Ok(sizes)
}

/// Every file of the bundle, as (path inside it, bytes), sorted.
fn listing(out: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(out).unwrap_or(&entry.path()).to_string_lossy().into_owned();
                files.push((rel, meta.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn bundle_bytes(out: &Path) -> anyhow::Result<u64> {
    Ok(listing(out)?.iter().map(|(_, n)| n).sum())
}

/// The files git would hand the device tool under `paths` (tracked and untracked-but-not-ignored, as it copies
/// them), or `None` without git.
fn git_files(root: &Path, paths: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--"])
        .args(paths)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| !f.is_empty() && root.join(f).is_file())
        .map(String::from)
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// `sha256sum` lines (`<hex>  <path>`) for the sources of [`SOURCES`], which the runner checks first.
fn sources_sha256(root: &Path) -> anyhow::Result<String> {
    let files = match git_files(root, SOURCES) {
        Some(files) => files,
        None => {
            let mut files = Vec::new();
            walk(root, Path::new("crates"), &mut files)?;
            files.extend(["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]);
            files.sort();
            files
        }
    };
    let mut text = String::new();
    // sha256sum escapes names with a backslash or a newline; there are none such in the tree, and none listed.
    for f in files.iter().filter(|f| !f.contains(['\\', '\n'])) {
        text += &format!("{}  {f}\n", xtask::verify::hash_file::<Sha256>(&root.join(f))?);
    }
    Ok(text)
}

/// The files under `root/rel`, as paths relative to `root` (the fallback of [`sources_sha256`] without git).
fn walk(root: &Path, rel: &Path, files: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(root.join(rel)).with_context(|| format!("reading {}", rel.display()))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &path, files)?;
        } else {
            files.push(path.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// The bytes of the working tree the device tool sends, or `None` without git.
fn working_tree_bytes(root: &Path) -> Option<u64> {
    let files = git_files(root, &["."])?;
    Some(files.iter().filter_map(|f| std::fs::metadata(root.join(f)).ok()).map(|m| m.len()).sum())
}

/// What the runner copies into summary.json as `bundle`: the commit, whether the tree had changes, the files, and
/// the payload's files with their unpacked sizes.
fn bundle_json(root: &Path, out: &Path, payload: &BTreeMap<String, u64>) -> anyhow::Result<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let files: BTreeMap<String, u64> = listing(out)?.into_iter().collect();
    let built = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let json = serde_json::json!({
        "built_by": "cargo xtask gpu-bundle",
        "built_unix": built,
        "profile": "release",
        "features": "cuda",
        "commit": git(&["rev-parse", "HEAD"]),
        "uncommitted_changes": git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        "files": files,
        "payload": payload,
    });
    Ok(json.to_string() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///ws/crates/tiny-tensor#0.1.0","manifest_path":"/ws/crates/tiny-tensor/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"tiny_tensor","src_path":"/ws/crates/tiny-tensor/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":1,"debug_assertions":false,"overflow_checks":false,"test":true},"features":["cuda"],"filenames":["/t/release/deps/tiny_tensor-1"],"executable":"/t/release/deps/tiny_tensor-1","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///ws/crates/tiny-tensor#0.1.0","target":{"kind":["lib"],"name":"tiny_tensor"},"profile":{"test":false},"filenames":["/t/release/deps/libtiny_tensor-1.rlib"],"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///ws/crates/tiny-tensor#0.1.0","target":{"kind":["test"],"name":"cuda"},"profile":{"test":true},"executable":"/t/release/deps/cuda-2","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///ws/crates/nn#tiny-nn@0.1.0","target":{"kind":["test"],"name":"cuda"},"profile":{"test":true},"executable":"/t/release/deps/cuda-3","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///ws/crates/tiny-learner#0.1.0","target":{"kind":["example"],"name":"train"},"profile":{"test":false},"executable":"/t/release/examples/train","fresh":false}
{"reason":"build-script-executed","package_id":"path+file:///ws/crates/tiny-tensor#0.1.0"}
   Compiling tiny-tensor v0.1.0 (/ws/crates/tiny-tensor)
{"reason":"build-finished","success":true}"#;

    #[test]
    fn the_executables_are_read_from_cargo_messages_with_their_package_and_target() {
        let found = artifacts(MESSAGES);
        let names: Vec<(&str, &str, &str)> =
            found.iter().map(|a| (a.package.as_str(), a.bundle_target(), a.executable.to_str().unwrap())).collect();
        assert_eq!(
            names,
            [
                ("tiny-tensor", "lib", "/t/release/deps/tiny_tensor-1"),
                ("tiny-tensor", "cuda", "/t/release/deps/cuda-2"),
                ("tiny-nn", "cuda", "/t/release/deps/cuda-3"),
                ("tiny-learner", "train", "/t/release/examples/train"),
            ]
        );
        assert!(found[0].profile_test && !found[3].profile_test);
        assert_eq!(found[0].target, "tiny_tensor");
    }

    #[test]
    fn package_names_come_from_every_form_of_package_id() {
        assert_eq!(package_name("path+file:///ws/crates/tiny-nn#0.1.0"), "tiny-nn");
        assert_eq!(package_name("path+file:///ws/crates/nn#tiny-nn@0.1.0"), "tiny-nn");
        assert_eq!(package_name("registry+https://github.com/rust-lang/crates.io-index#serde@1.0.228"), "serde");
        assert_eq!(package_name("tiny-nn 0.1.0 (path+file:///ws/crates/nn)"), "tiny-nn");
    }

    #[test]
    fn no_two_binaries_of_the_bundle_share_a_name() {
        let mut names: Vec<String> = TESTS
            .iter()
            .flat_map(|(p, ts)| ts.iter().map(move |t| format!("tests/{p}-{}", t.trim_start_matches("--"))))
            .chain(EXAMPLES.iter().map(|(_, e)| e.to_string()))
            .chain([RUNNER.1.to_owned(), "run.sh".to_owned()])
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(
            names.contains(&"tests/tiny-nn-cuda".to_owned()) && names.contains(&"tests/tiny-tensor-cuda".to_owned())
        );
    }
}

//! GPU test support: the one rule for when a device test skips or fails, and the CUDA examples that tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The device a GPU test runs on: the value `opened` holds when opening the GPU succeeded. Otherwise the
/// test prints that it is skipped, with the reason, and gets `None`; but with `TINY_REQUIRE_CUDA=1` in the
/// environment it panics, naming the test and the reason, so that a machine with a GPU cannot pass a device
/// suite by skipping it (a missing library, a failed kernel load or a cuBLAS error all say why here).
///
/// ```
/// let opened: Result<u8, &str> = Err("no libcuda");
/// if std::env::var("TINY_REQUIRE_CUDA").as_deref() != Ok("1") {
///     assert_eq!(tiny_fixtures::gpu_or_skip("doc", opened), None);
/// }
/// assert_eq!(tiny_fixtures::gpu_or_skip("doc", Ok::<u8, &str>(0)), Some(0));
/// ```
pub fn gpu_or_skip<D, E: std::fmt::Display>(test: &str, opened: Result<D, E>) -> Option<D> {
    match opened {
        Ok(device) => Some(device),
        Err(reason) if required() => panic!("{test}: TINY_REQUIRE_CUDA=1, but no GPU could be opened: {reason}"),
        Err(reason) => {
            eprintln!("{test}: skipped, no usable CUDA GPU ({reason})");
            None
        }
    }
}

/// Whether `TINY_REQUIRE_CUDA=1` is set.
fn required() -> bool {
    std::env::var("TINY_REQUIRE_CUDA").as_deref() == Ok("1")
}

/// The binary of example `name` of `package`, built with `--features cuda`, for a device test that runs it.
///
/// Where `TINY_EXAMPLES_DIR` is set (the GPU bundle sets it to its folder, on a machine without cargo) the
/// binary is `$TINY_EXAMPLES_DIR/<name>`. Otherwise the cargo that built these tests builds the example into the
/// same target folder and profile as the test binary (a `--test` run builds no example). Panics, naming the
/// reason, when neither gives a binary: a test that needs the example cannot run without it.
pub fn cuda_example(package: &str, name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TINY_EXAMPLES_DIR") {
        let exe = Path::new(&dir).join(name);
        assert!(exe.is_file(), "TINY_EXAMPLES_DIR is set, but {} is not there", exe.display());
        return exe;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let profile = profile_dir.file_name().and_then(|p| p.to_str()).expect("a profile folder");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--features", "cuda", "--example", name, "--profile"])
        .arg(if profile == "debug" { "dev" } else { profile })
        .env("CARGO_TARGET_DIR", profile_dir.parent().expect("the target folder"))
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "building example {name}: {}", String::from_utf8_lossy(&out.stderr));
    profile_dir.join("examples").join(name)
}

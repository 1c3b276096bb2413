//! The on-disk kernel cache: a second process loads the CUBIN the first compiled, and a damaged file is rebuilt.
//!
//! A process opens its GPU once, so each open runs in a child process (this test binary again, with
//! `TINY_KERNEL_CACHE_CHILD` set), which prints how its kernels were loaded.
#![cfg(feature = "cuda")]

use std::path::Path;
use std::process::Command;

use tiny_tensor::{Device, cuda};

const TEST: &str = "a_second_process_loads_the_kernels_from_the_cache";

/// Opens the GPU with its kernel cache in `dir` and returns the child's report: `origin: ...` or `unavailable: ...`.
fn open_in_child(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env("TINY_KERNEL_CACHE", dir)
        .env("TINY_KERNEL_CACHE_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The harness prints the test's name first, on the same line.
    let at = stdout.find("origin: ").or_else(|| stdout.find("unavailable: "));
    let at = at.unwrap_or_else(|| panic!("no report:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    stdout[at..].lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_second_process_loads_the_kernels_from_the_cache() {
    if std::env::var_os("TINY_KERNEL_CACHE_CHILD").is_some() {
        match Device::new_cuda(0) {
            Ok(_) => println!("origin: {:?}", cuda::kernel_origin(0)),
            Err(e) => println!("unavailable: {e}"),
        }
        return;
    }
    let dir = std::env::temp_dir().join(format!("tiny-kernel-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = open_in_child(&dir);
    let opened = match first.strip_prefix("unavailable: ") {
        Some(reason) => Err(reason.to_string()),
        None => Ok(()),
    };
    if tiny_fixtures::gpu_or_skip(TEST, opened).is_none() {
        return;
    }
    assert!(first.starts_with("origin: Some(Compiled("), "{first}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cached CUBIN, no temporary left: {files:?}");
    let second = open_in_child(&dir);
    assert_eq!(second, format!("origin: Some(Cache({:?}))", files[0]));
    // A damaged file is not loaded: the kernels are compiled again and the file written anew.
    std::fs::write(&files[0], b"not a cubin").unwrap();
    let third = open_in_child(&dir);
    assert!(third.starts_with("origin: Some(Compiled("), "{third}");
    assert_ne!(std::fs::read(&files[0]).unwrap(), b"not a cubin");
    std::fs::remove_dir_all(&dir).unwrap();
}

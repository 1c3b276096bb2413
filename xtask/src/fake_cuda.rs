//! `cargo xtask fake-cuda`: builds a CPU stand-in for libcuda, libnvrtc and libcublas, so that the CUDA device
//! tests run end to end on a machine without a GPU (`LD_LIBRARY_PATH=target/fake-cuda`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask fake-cuda [--out DIR]

Compiles xtask/src/fake_cuda.cpp with g++ into DIR (default target/fake-cuda) as libcuda.so, libnvrtc.so and
libcublas.so. With that folder on LD_LIBRARY_PATH, tiny's CUDA backend finds a \"GPU\" whose memory is host
memory, whose kernels are the .cu files compiled by g++ (each block's threads run as fibers) and whose SGEMM is a
plain loop. It checks what the backend asks of the driver: kernel arguments, launch shapes, cuBLAS layouts and
results against the CPU. It says nothing of speed or of the real libraries.";

const SOURCE: &str = include_str!("fake_cuda.cpp");

/// The names cudarc looks for, each a link to the one library.
const NAMES: [&str; 3] = ["libcuda.so", "libnvrtc.so", "libcublas.so"];

pub fn run(args: &[String], root: &Path) -> anyhow::Result<()> {
    let mut out = root.join("target/fake-cuda");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().context("--out needs a folder")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let src = out.join("fake_cuda.cpp");
    std::fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
    let lib = out.join("libfakecuda.so");
    let built = Command::new("g++")
        .args(["-std=c++17", "-O3", "-shared", "-fPIC", "-Wall", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .context("running g++ (is it installed?)")?;
    if !built.status.success() {
        bail!("g++ failed on {}:\n{}", src.display(), String::from_utf8_lossy(&built.stderr));
    }
    for name in NAMES {
        let link = out.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libfakecuda.so", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    println!("wrote {} (use it with LD_LIBRARY_PATH={})", lib.display(), out.display());
    Ok(())
}

//! `cargo xtask fake-cuda`: builds a CPU stand-in for libcuda, libnvrtc and libcublas (the `tiny-fake-cuda` crate),
//! so that the CUDA device tests run end to end on a machine without a GPU (`LD_LIBRARY_PATH=target/fake-cuda`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask fake-cuda [--out DIR]

Compiles crates/tiny-fake-cuda/src/fake_cuda.cpp with g++ into DIR (default target/fake-cuda) as libcuda.so,
libnvrtc.so and libcublas.so. With that folder on LD_LIBRARY_PATH, tiny's CUDA backend finds a \"GPU\" whose
memory is host memory, whose kernels are the .cu files compiled by g++ (each block's threads run as fibers) and
whose SGEMM is a plain loop. It checks what the backend asks of the driver: kernel arguments, launch shapes,
cuBLAS layouts and results against the CPU. It says nothing of speed or of the real libraries.";

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
    let lib = tiny_fake_cuda::build(&out)?;
    println!("wrote {} (use it with LD_LIBRARY_PATH={})", lib.display(), out.display());
    Ok(())
}

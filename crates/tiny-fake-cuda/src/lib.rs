//! Builds a CPU stand-in for libcuda, libnvrtc and libcublas with g++, so that CUDA code runs where there is no GPU.
//!
//! [`build`] writes `fake_cuda.cpp` (this crate's one C++ file) into a folder, compiles it into
//! `libfakecuda.so` and links `libcuda.so`, `libnvrtc.so` and `libcublas.so` to it. With that folder on
//! `LD_LIBRARY_PATH`, a program that loads the CUDA libraries at run time (tiny-tensor's backend, through cudarc)
//! finds a "GPU" whose memory is host memory, whose kernels are the CUDA sources compiled by g++ (each block's
//! threads run as fibers) and whose SGEMM is a plain loop. Nothing links this crate into a program: `cargo xtask
//! fake-cuda` calls it, and the device tests pick the result up from the library path.
//!
//! ```no_run
//! let lib = tiny_fake_cuda::build(std::path::Path::new("target/fake-cuda"))?;
//! assert!(lib.ends_with("libfakecuda.so"));
//! # Ok::<(), tiny_fake_cuda::Error>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The C++ source of the fake driver, NVRTC and cuBLAS.
pub const SOURCE: &str = include_str!("fake_cuda.cpp");

/// The file name of the built library.
pub const LIBRARY: &str = "libfakecuda.so";

/// The names the CUDA loaders look for, each written as a symbolic link to [`LIBRARY`].
pub const LINKS: [&str; 3] = ["libcuda.so", "libnvrtc.so", "libcublas.so"];

/// What went wrong while building the fake libraries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done ("creating", "writing", "linking").
        what: &'static str,
        /// The file or folder it was done to.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// g++ could not be started, most often because it is not installed.
    #[error("running g++ (is it installed?)")]
    NoCompiler(#[source] io::Error),
    /// g++ ran and rejected the source.
    #[error("g++ failed on {}:\n{stderr}", path.display())]
    Compile {
        /// The source file g++ was given.
        path: PathBuf,
        /// What g++ wrote to its standard error.
        stderr: String,
    },
}

/// Writes the source into `out` (created when missing), compiles it with g++ into `out/libfakecuda.so` and
/// points the three CUDA library names in `out` at it, replacing whatever held those names. Returns the
/// library's path.
pub fn build(out: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(out).map_err(io_error("creating", out))?;
    let src = out.join("fake_cuda.cpp");
    std::fs::write(&src, SOURCE).map_err(io_error("writing", &src))?;
    let lib = out.join(LIBRARY);
    let built = Command::new("g++")
        .args(["-std=c++17", "-O3", "-shared", "-fPIC", "-Wall", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .map_err(Error::NoCompiler)?;
    if !built.status.success() {
        return Err(Error::Compile { path: src, stderr: String::from_utf8_lossy(&built.stderr).into_owned() });
    }
    for name in LINKS {
        let link = out.join(name);
        // A stale link or file of that name goes first; a missing one is what a fresh folder has.
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(LIBRARY, &link).map_err(io_error("linking", &link))?;
    }
    Ok(lib)
}

/// Turns an I/O error while `what` (creating, writing, linking) on `path` into an [`Error::Io`].
fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { what, path: path.to_path_buf(), source }
}

//! `cargo xtask`: project chores (fetching Imagenette and pretrained weights, generating data), dispatched by name.

mod fake_cuda;
mod gpu_bundle;
mod synth;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  fetch-data     download, verify and unpack Imagenette into data/ (see `cargo xtask fetch-data --help`)
  fetch-weights  download and verify pretrained weights into data/weights/ (see `cargo xtask fetch-weights --help`)
  synth-data     generate the synthetic Imagenette-shaped set in data/ (see `cargo xtask synth-data --help`)
  gpu-bundle     build the CUDA tests and examples into .device-bin/ for a GPU machine without cargo
  fake-cuda      build a CPU stand-in for the CUDA libraries into target/fake-cuda, for the device tests";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "fetch-data" => xtask::fetch_data::main(rest, &data_dir()),
        "fetch-weights" => xtask::fetch_weights::main(rest, &data_dir()),
        "synth-data" => return ExitCode::from(synth::run(rest)),
        "gpu-bundle" => gpu_bundle::run(rest, &data_dir().parent().map(Path::to_path_buf).unwrap_or_default()),
        "fake-cuda" => fake_cuda::run(rest, &data_dir().parent().map(Path::to_path_buf).unwrap_or_default()),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns `data/` in the workspace root (the parent of this crate's folder), or in the current folder when the
/// binary runs away from its source tree.
fn data_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    match root {
        Some(root) if root.join("Cargo.toml").is_file() => root.join("data"),
        _ => PathBuf::from("data"),
    }
}

//! `cargo xtask synth-data [--out DIR] [--scale F] [--seed N]`: writes a synthetic Imagenette.

use std::path::{Path, PathBuf};

/// Parses the arguments after `synth-data`, generates the set and prints a summary.
///
/// Returns the process exit code: 0 on success, 2 on bad arguments, 1 on failure.
pub fn run(args: &[String]) -> u8 {
    match parse(args) {
        Ok(Some((out, scale, seed))) => match tiny_data::synth::generate(&out, scale, seed) {
            Ok(s) => {
                println!(
                    "wrote {} train + {} val images ({} greyscale, {:.1} MB) to {}",
                    s.train,
                    s.valid,
                    s.greyscale,
                    s.bytes as f64 / 1e6,
                    s.root.display()
                );
                0
            }
            Err(e) => {
                eprintln!("synth-data: {}", error_chain(&e));
                1
            }
        },
        Ok(None) => {
            println!("{USAGE}");
            0
        }
        Err(msg) => {
            eprintln!("synth-data: {msg}\n{USAGE}");
            2
        }
    }
}

const USAGE: &str = "usage: cargo xtask synth-data [--out DIR] [--scale F] [--seed N]\n  \
    --out DIR   where to write (default: data/synth-imagenette under the workspace root)\n  \
    --scale F   fraction of Imagenette's 9,469 + 3,925 images (default 1.0)\n  \
    --seed N    seed of the pixels (default 0)";

/// Returns `(out, scale, seed)`, `None` for `--help`, or a message for bad arguments.
fn parse(args: &[String]) -> Result<Option<(PathBuf, f32, u64)>, String> {
    let mut out = workspace_root().join("data").join("synth-imagenette");
    let (mut scale, mut seed) = (1.0f32, 0u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--scale" => {
                let v = value()?;
                scale = v.parse().map_err(|_| format!("--scale {v}: not a number"))?;
            }
            "--seed" => {
                let v = value()?;
                seed = v.parse().map_err(|_| format!("--seed {v}: not an integer"))?;
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some((out, scale, seed)))
}

/// The workspace root: the parent of xtask's own manifest folder.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Formats an error with its chain of causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

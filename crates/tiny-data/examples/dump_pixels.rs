//! Writes the pixels tiny's loader makes of image files, for comparing its input with PIL's (`parity/input_parity.py`).
//!
//! ```text
//! cargo run --release -p tiny-data --example dump_pixels -- --size 64 --out pixels.u8 [--cache] FILES...
//! ```
//!
//! Each file becomes `size * size * 3` bytes (RGB, rows top to bottom) through the dataset's squash transform,
//! appended to `--out` in the order given. With `--cache`, every image is read twice through a caching dataset and
//! the second, cached, pass is written. A file that cannot be decoded stops the run with its error.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use tiny_data::{Dataset, ImageFolderDataset, ItemTransform};

fn main() -> anyhow::Result<()> {
    let (mut size, mut out, mut cache, mut files) = (64u32, None, false, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = args.next().context("--size needs a value")?.parse()?,
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a path")?)),
            "--cache" => cache = true,
            "--list" => {
                let list = std::fs::read_to_string(args.next().context("--list needs a file")?)?;
                files.extend(list.lines().filter(|l| !l.is_empty()).map(PathBuf::from));
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    let Some(out) = out else { bail!("usage: dump_pixels --size N --out FILE [--cache] [--list FILE] FILES...") };
    let labels = vec![0; files.len()];
    let ds = ImageFolderDataset::from_labelled(files, labels, ItemTransform::squash(size))?.with_cache(cache);
    if cache {
        for i in 0..ds.len() {
            ds.get(i)?;
        }
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for i in 0..ds.len() {
        w.write_all(&ds.get(i)?.pixels)?;
    }
    w.flush()?;
    eprintln!("wrote {} images of {size}x{size} to {}", ds.len(), out.display());
    Ok(())
}

//! Benchmarks the DataLoader: one pass over a train split, then one JSON line of figures.
//!
//! `cargo run --release -p tiny-data --example bench_loader -- --data DIR --size 64 --bs 128
//! --workers 2 [--single N] [--cache]`. Before the pass it times decode + resize of `N` images
//! (default 500) on this thread alone, so the loader's efficiency against `workers` times the
//! one-core rate can be read from the same run, and then the same images stage by stage (read,
//! decode, resize).

use std::time::Instant;

use anyhow::{Context, bail};
use tiny_data::{DataLoader, ImageFolder, ImageFolderDataset, ItemTransform, decode_rgb, decode_rgb_bytes};

/// Command-line options.
struct Args {
    data: std::path::PathBuf,
    size: u32,
    bs: usize,
    workers: usize,
    single: usize,
    cache: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        data: "data/synth-imagenette".into(),
        size: 64,
        bs: 128,
        workers: tiny_data::default_num_workers(),
        single: 500,
        cache: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = value()?.into(),
            "--size" => a.size = value()?.parse()?,
            "--bs" => a.bs = value()?.parse()?,
            "--workers" => a.workers = value()?.parse()?,
            "--single" => a.single = value()?.parse()?,
            "--cache" => a.cache = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The peak resident set size of this process in MiB, from /proc (0 where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    let folder = ImageFolder::open(&a.data)?;
    let files = folder.splits.train.clone();
    let tfm = ItemTransform::squash(a.size);

    // One-core decode + resize rate over files spread across the split.
    let step = (files.len() / a.single.max(1)).max(1);
    let sample: Vec<_> = files.iter().step_by(step).take(a.single).cloned().collect();
    let t0 = Instant::now();
    for f in &sample {
        let img = decode_rgb(f)?;
        std::hint::black_box(tfm.apply(&img, None, f)?);
    }
    let single_s = t0.elapsed().as_secs_f64();
    let single_rate = sample.len() as f64 / single_s;
    // The same work split into its stages, to show where the time of one image goes.
    let (mut read_s, mut decode_s, mut resize_s) = (0.0, 0.0, 0.0);
    for f in &sample {
        let t = Instant::now();
        let bytes = std::fs::read(f)?;
        let t_read = Instant::now();
        let img = decode_rgb_bytes(&bytes, f)?;
        let t_decode = Instant::now();
        std::hint::black_box(tfm.apply(&img, None, f)?);
        read_s += (t_read - t).as_secs_f64();
        decode_s += (t_decode - t_read).as_secs_f64();
        resize_s += t_decode.elapsed().as_secs_f64();
    }
    let per_img_us = |s: f64| s * 1e6 / sample.len() as f64;
    let (read_us, decode_us, resize_us) = (per_img_us(read_s), per_img_us(decode_s), per_img_us(resize_s));

    let ds = ImageFolderDataset::new(files, &folder.vocab, tfm)?.with_cache(a.cache);
    let dl = DataLoader::new(ds, a.bs)?.shuffle(true).seed(42).num_workers(a.workers);
    let t0 = Instant::now();
    let (mut images, mut batches) = (0usize, 0usize);
    for b in &dl {
        images += b?.len();
        batches += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = images as f64 / secs;
    let efficiency = rate / (a.workers.max(1) as f64 * single_rate);
    println!(
        "loader: {images} images in {batches} batches, {secs:.2}s, {rate:.0} img/s with {} workers; \
         one core: {:.0} us/img ({single_rate:.0} img/s; read {read_us:.0}, decode {decode_us:.0}, \
         resize {resize_us:.0}); efficiency {:.0}%",
        a.workers,
        1e6 / single_rate,
        efficiency * 100.0
    );
    println!(
        "{{\"mode\":\"bench-loader\",\"data\":{:?},\"size\":{},\"bs\":{},\"workers\":{},\"cache\":{},\
         \"images\":{images},\"batches\":{batches},\"seconds\":{secs:.4},\"img_per_s\":{rate:.1},\
         \"single_core_images\":{},\"single_core_us_per_img\":{:.1},\"single_core_img_per_s\":{single_rate:.1},\
         \"read_us\":{read_us:.1},\"decode_us\":{decode_us:.1},\"resize_us\":{resize_us:.1},\
         \"efficiency_vs_workers_x_single\":{efficiency:.3},\"peak_rss_mib\":{:.0},\"nproc\":{}}}",
        a.data.display().to_string(),
        a.size,
        a.bs,
        a.workers,
        a.cache,
        sample.len(),
        1e6 / single_rate,
        peak_rss_mib(),
        tiny_data::default_num_workers()
    );
    Ok(())
}

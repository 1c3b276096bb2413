//! Tests of the synthetic Imagenette: layout, counts, greyscale share, determinism, speed.

mod common;

use std::path::Path;
use std::time::Instant;

use common::TempDir;
use tiny_data::synth::{IMAGENETTE_WNIDS, generate, generate_with, plan};
use tiny_data::{ImageFolder, get_image_files};

/// Returns every file under `root` with its bytes, sorted by path.
fn snapshot(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walk(root)
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

#[test]
fn small_set_has_imagenette_layout() {
    let dir = TempDir::new("synth-layout");
    let root = dir.path().join("synth");
    let t0 = Instant::now();
    let summary = generate(&root, 0.01, 7).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert!(secs < 20.0, "small set took {secs:.1}s");
    assert_eq!((summary.train, summary.valid), (97, 40));
    assert!(summary.greyscale >= 1);

    assert!(root.join("noisy_imagenette.csv").is_file());
    let folder = ImageFolder::open(&root).unwrap();
    assert_eq!(folder.vocab.names(), IMAGENETTE_WNIDS);
    assert_eq!(folder.splits.train.len(), 97);
    assert_eq!(folder.splits.valid.len(), 40);
    let files = get_image_files(&root).unwrap();
    assert_eq!(files.len(), 137, "the CSV is skipped");
    let mut grey = 0;
    for f in &files {
        assert_eq!(f.extension().unwrap(), "JPEG");
        let img = image::open(f).unwrap();
        assert_eq!(img.width().min(img.height()), 160, "{}", f.display());
        assert!(img.width().max(img.height()) <= 240);
        grey += usize::from(img.color() == image::ColorType::L8);
    }
    assert_eq!(grey, summary.greyscale);
    for wnid in IMAGENETTE_WNIDS {
        let n = |split: &str| std::fs::read_dir(root.join(split).join(wnid)).unwrap().count();
        assert!(n("train") >= 3 && n("val") >= 3, "{wnid}");
    }
    // Nothing is left beside the output: the temp folder was renamed into place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn same_seed_gives_same_bytes_whatever_the_threads() {
    let dir = TempDir::new("synth-determinism");
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    generate_with(&a, 0.005, 3, 1).unwrap();
    generate_with(&b, 0.005, 3, 3).unwrap();
    generate_with(&c, 0.005, 4, 2).unwrap();
    let (sa, sb, sc) = (snapshot(&a), snapshot(&b), snapshot(&c));
    assert_eq!(sa, sb);
    assert_eq!(sa.len(), sc.len());
    assert_ne!(sa, sc, "another seed gives other pixels");

    // Regenerating over an existing set replaces it.
    generate_with(&a, 0.005, 4, 2).unwrap();
    assert_eq!(snapshot(&a), sc);
}

#[test]
fn full_plan_has_imagenette_counts_and_one_percent_greyscale() {
    let items = plan(1.0, 0);
    let train = items.iter().filter(|i| i.rel_path.starts_with("train")).count();
    assert_eq!((train, items.len() - train), (9469, 3925));
    let grey = items.iter().filter(|i| i.greyscale).count();
    assert!((120..=140).contains(&grey), "{grey} greyscale");
    assert!(items.iter().all(|i| i.width.min(i.height) == 160));
    let long_sides: std::collections::BTreeSet<u32> = items.iter().map(|i| i.width.max(i.height)).collect();
    assert!(long_sides.len() > 50, "long side varies");
}

#[test]
fn bad_scale_is_rejected() {
    let dir = TempDir::new("synth-scale");
    assert!(generate(&dir.path().join("x"), 0.0, 0).is_err());
    assert!(generate(&dir.path().join("x"), f32::NAN, 0).is_err());
}

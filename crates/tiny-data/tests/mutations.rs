//! Bad bytes at scale: seeded mutations of valid JPEG and PNG files (truncations, bit flips, header fields) all end
//! in an image or in an error that names the file, never in a panic or a huge allocation (issue 19).
//!
//! `cargo test -p tiny-data --test mutations` tries 300 cases per format; `TINY_MUTATIONS=10000` in front of it tries
//! that many (a benchmark-style run, not a test-suite one).

mod common;

use std::path::Path;

use common::jpeg_bytes;
use tiny_data::{DataError, ItemTransform, MAX_IMAGE_PIXELS, Rng, decode_rgb_bytes};

/// The ways a case damages the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    /// Cut at a random length.
    Truncate,
    /// Flip 1 to 8 random bits anywhere.
    FlipBits,
    /// Overwrite 1 to 4 bytes of the first 64 (where the headers and their size fields are) with 0x00, 0xFF or
    /// a random value.
    Header,
}

fn mutate(valid: &[u8], case: u64) -> (Mutation, Vec<u8>) {
    let mut rng = Rng::from_parts(&[0x4D55_5441, case]);
    let mut bytes = valid.to_vec();
    let kind = [Mutation::Truncate, Mutation::FlipBits, Mutation::Header][rng.below(3)];
    match kind {
        Mutation::Truncate => bytes.truncate(rng.below(valid.len())),
        Mutation::FlipBits => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        Mutation::Header => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len().min(64));
                bytes[at] = [0x00, 0xFF, rng.below(256) as u8][rng.below(3)];
            }
        }
    }
    (kind, bytes)
}

/// Runs `cases` mutations of `valid` through decode and resize; returns how many decoded and how many were errors.
fn run(valid: &[u8], name: &str, cases: u64) -> (usize, usize) {
    let path = Path::new(name);
    let (mut ok, mut errors) = (0, 0);
    for case in 0..cases {
        let (kind, bytes) = mutate(valid, case);
        let outcome = std::panic::catch_unwind(|| {
            decode_rgb_bytes(&bytes, path).and_then(|img| ItemTransform::squash(16).apply(&img, None, path))
        });
        match outcome {
            Ok(Ok(pixels)) => {
                assert_eq!(pixels.len(), 16 * 16 * 3);
                ok += 1;
            }
            Ok(Err(e)) => {
                assert_eq!(e.path(), Some(path), "case {case} ({kind:?}): the error names the file: {e}");
                if let DataError::TooManyPixels { width, height, .. } = e {
                    assert!(u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS);
                }
                errors += 1;
            }
            Err(_) => panic!("case {case} ({kind:?}) of {name} panicked instead of returning an error"),
        }
    }
    (ok, errors)
}

fn cases() -> u64 {
    std::env::var("TINY_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

#[test]
fn mutated_jpegs_decode_or_name_the_file() {
    let valid = jpeg_bytes(40, 30, |x, y| [(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]);
    let (ok, errors) = run(&valid, "mutated.jpg", cases());
    eprintln!("JPEG: {} cases, {ok} decoded, {errors} errors naming the file", ok + errors);
    assert!(errors > 0 && ok > 0, "the mutations reach both outcomes");
}

#[test]
fn mutated_pngs_decode_or_name_the_file() {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90]));
    let mut valid = std::io::Cursor::new(Vec::new());
    image::DynamicImage::from(img).write_to(&mut valid, image::ImageFormat::Png).unwrap();
    let (ok, errors) = run(&valid.into_inner(), "mutated.png", cases());
    eprintln!("PNG: {} cases, {ok} decoded, {errors} errors naming the file", ok + errors);
    assert!(errors > 0, "the mutations reach errors");
}

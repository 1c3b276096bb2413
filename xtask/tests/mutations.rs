//! Bad bytes at scale, for archives: seeded mutations of a valid data-set `.tgz` (truncations, bit flips, header
//! fields) are unpacked or refused with an error naming the archive, never a panic (issue 19).
//!
//! `cargo test -p xtask --test mutations` tries 300 cases; `TINY_MUTATIONS=10000` in front of it tries that many.

mod support;

use support::TempDir;
use support::archives::dataset_tgz;
use xtask::untar;

#[test]
fn mutated_archives_unpack_or_name_the_archive() {
    let valid = dataset_tgz("imagenette2-160");
    let cases: u64 = std::env::var("TINY_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let tmp = TempDir::new("mutations");
    let (mut ok, mut errors) = (0, 0);
    for case in 0..cases {
        // The same kinds of damage as tiny-data's mutation test: a cut, 1-8 flipped bits, or 1-4 header bytes.
        let mut rng = tiny_data::Rng::from_parts(&[0x5441_5247, case]);
        let mut next = |n: usize| rng.below(n);
        let mut bytes = valid.clone();
        let kind = next(3);
        match kind {
            0 => bytes.truncate(next(valid.len())),
            1 => {
                for _ in 0..1 + next(8) {
                    let at = next(bytes.len());
                    bytes[at] ^= 1 << next(8);
                }
            }
            _ => {
                for _ in 0..1 + next(4) {
                    let at = next(bytes.len().min(64));
                    bytes[at] = [0x00, 0xFF, next(256) as u8][next(3)];
                }
            }
        }
        let archive = tmp.path().join(format!("case-{case}.tgz"));
        std::fs::write(&archive, &bytes).unwrap();
        let into = tmp.path().join(format!("case-{case}"));
        std::fs::create_dir_all(&into).unwrap();
        let outcome =
            std::panic::catch_unwind(|| untar::unpack(&archive, &into, Some(untar::size_cap(bytes.len() as u64))));
        match outcome {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                assert!(msg.contains(&archive.display().to_string()), "case {case} (kind {kind}): {msg}");
                errors += 1;
            }
            Err(_) => panic!("case {case} (kind {kind}) panicked instead of returning an error"),
        }
        let _ = std::fs::remove_dir_all(&into);
        let _ = std::fs::remove_file(&archive);
    }
    eprintln!("tar.gz: {cases} cases, {ok} unpacked, {errors} errors naming the archive");
    assert!(errors > 0, "the mutations reach errors");
}

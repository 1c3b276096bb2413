//! Command-line options of `fetch-data` and how they resolve into a plan.

use std::path::{Path, PathBuf};

use xtask::fetch_data::{Args, Plan, Source, VARIANTS, variant};
use xtask::verify::Expected;

fn plan(args: &[&str]) -> anyhow::Result<Plan> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Plan::new(Args::parse(&args)?.expect("not a help request"), Path::new("/ws/data"))
}

#[test]
fn the_default_is_imagenette_160_from_fast_ai_into_data() {
    let plan = plan(&[]).unwrap();
    assert_eq!(plan.folder(), Path::new("/ws/data/imagenette2-160"));
    assert_eq!(plan.source, Source::Download(VARIANTS[0].url.to_owned()));
    let md5 = Some("e793b78cc4c9e9a4ccc0c1155377a412".to_owned());
    assert_eq!(plan.expected, Expected { size: Some(99_003_388), md5 });
}

#[test]
fn size_selects_the_variant_and_dest_the_folder() {
    let plan = plan(&["--size", "320", "--dest=/tmp/d"]).unwrap();
    assert_eq!(plan.folder(), Path::new("/tmp/d/imagenette2-320"));
    assert_eq!(plan.expected.size, Some(341_663_724));
    assert_eq!(variant("full").unwrap().name, "imagenette2");
    assert!(variant("224").is_err());
}

#[test]
fn a_mirror_keeps_the_variant_checksum_unless_md5_is_given() {
    let mirror = plan(&["--url", "http://mirror.invalid/i.tgz"]).unwrap();
    assert_eq!(mirror.expected.md5.as_deref(), Some(VARIANTS[0].md5));
    let other = plan(&["--url", "http://m.invalid/i.tgz", "--md5", "0123456789ABCDEF0123456789ABCDEF"]).unwrap();
    assert_eq!(other.expected, Expected { size: None, md5: Some("0123456789abcdef0123456789abcdef".into()) });
}

#[test]
fn an_archive_on_disk_is_named_and_checked_by_its_file_name() {
    let known = plan(&["--archive", "/dl/imagenette2-320.tgz"]).unwrap();
    assert_eq!(known.name, "imagenette2-320");
    assert_eq!(known.expected.md5.as_deref(), Some(VARIANTS[1].md5));
    assert_eq!(known.source, Source::Archive(PathBuf::from("/dl/imagenette2-320.tgz")));
    let unknown = plan(&["--archive", "/dl/mine.tar.gz"]).unwrap();
    assert_eq!((unknown.name.as_str(), unknown.expected), ("mine", Expected::default()));
}

#[test]
fn bad_options_are_refused() {
    assert!(plan(&["--bogus"]).is_err());
    assert!(plan(&["--size"]).is_err());
    assert!(plan(&["--md5", "abc"]).is_err());
    assert!(plan(&["--archive", "a.tgz", "--url", "http://m.invalid/a.tgz"]).is_err());
    assert!(Args::parse(&["--help".to_owned()]).unwrap().is_none());
}

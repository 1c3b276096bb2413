//! Hostile archives (`..`, absolute paths, links out) are refused whole, leaving nothing behind anywhere.

mod support;

use std::path::Path;

use support::TempDir;
use support::archives::{Raw, raw_tgz};
use xtask::fetch_data::{Outcome, Plan, Source, run};
use xtask::progress::{Reporter, Style};
use xtask::verify::Expected;

/// Unpacks `entries` with `fetch-data --archive` into `TMP/data/set` and returns the error text.
fn refused(tmp: &Path, entries: &[Raw]) -> String {
    let archive = tmp.join("set.tgz");
    std::fs::write(&archive, raw_tgz(entries)).unwrap();
    let dest = tmp.join("data");
    let plan = Plan { name: "set".into(), source: Source::Archive(archive), expected: Expected::default(), dest };
    let err = run(&plan, Reporter::new(Style::Silent)).expect_err("the archive must be refused");
    assert!(!tmp.join("data/set").exists(), "a half-unpacked data set was left");
    assert!(!tmp.join("data/.set.unpacking").exists(), "the staging folder was left");
    format!("{err:#}")
}

#[test]
fn a_parent_dir_entry_is_refused() {
    let tmp = TempDir::new("dotdot");
    let err = refused(tmp.path(), &[Raw::Dir("set/"), Raw::File("set/ok.txt", b"ok"), Raw::File("../escape", b"x")]);
    assert!(err.contains("`../escape`") && err.contains("contains `..`"), "{err}");
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn an_absolute_entry_is_refused() {
    let tmp = TempDir::new("abs");
    let outside = tmp.path().join("outside.txt");
    let name = outside.to_str().unwrap().to_owned();
    let err = refused(tmp.path(), &[Raw::File("set/ok.txt", b"ok"), Raw::File(&name, b"x")]);
    assert!(err.contains("is absolute"), "{err}");
    assert!(!outside.exists());
}

#[test]
fn a_symlink_out_of_the_destination_is_refused() {
    let tmp = TempDir::new("symlink");
    std::fs::create_dir(tmp.path().join("outside")).unwrap();
    let entries = [Raw::Dir("set/"), Raw::Symlink("set/link", "../../outside"), Raw::File("set/link/evil", b"x")];
    let err = refused(tmp.path(), &entries);
    assert!(err.contains("`set/link`") && err.contains("outside the destination"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path().join("outside")).unwrap().count(), 0);
}

#[test]
fn an_absolute_symlink_is_refused() {
    let tmp = TempDir::new("abslink");
    let err = refused(tmp.path(), &[Raw::Symlink("set/etc", "/etc")]);
    assert!(err.contains("an absolute path"), "{err}");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let tmp = TempDir::new("through");
    let entries = [Raw::Dir("set/d/"), Raw::Symlink("set/d/up", ".."), Raw::Symlink("set/d/up/up2", "..")];
    let err = refused(tmp.path(), &entries);
    assert!(err.contains("goes through the symbolic link `set/d/up`"), "{err}");
}

#[test]
fn a_symlink_to_the_sibling_of_the_single_top_folder_is_refused() {
    // Inside the staging folder `set/link -> ../other` stays inside, but once `set/` becomes the data set folder
    // the link would point beside it.
    let tmp = TempDir::new("sibling");
    let err = refused(tmp.path(), &[Raw::Dir("set/"), Raw::Symlink("set/link", "../other")]);
    assert!(err.contains("outside the destination"), "{err}");
}

#[test]
fn links_that_stay_inside_are_unpacked() {
    let tmp = TempDir::new("inside");
    let archive = tmp.path().join("set.tgz");
    let entries = [Raw::Dir("set/sub/"), Raw::File("set/sub/a.txt", b"a"), Raw::Symlink("set/b.txt", "sub/a.txt")];
    std::fs::write(&archive, raw_tgz(&entries)).unwrap();
    let dest = tmp.path().join("data");
    let plan = Plan { name: "set".into(), source: Source::Archive(archive), expected: Expected::default(), dest };
    let outcome = run(&plan, Reporter::new(Style::Silent)).unwrap();
    assert!(matches!(outcome, Outcome::Installed(..)), "{outcome:?}");
    assert_eq!(std::fs::read(tmp.path().join("data/set/b.txt")).unwrap(), b"a");
}

//! Generated test archives: a small Imagenette-shaped `.tgz`, and raw ones with hostile entries.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

/// The files of the small data set, as (path inside the top folder, contents).
pub fn dataset_files() -> Vec<(String, Vec<u8>)> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut files = Vec::new();
    for split in ["train", "val"] {
        for class in ["n01440764", "n02102040"] {
            for i in 0..3 {
                files.push((format!("{split}/{class}/{class}_{i}.JPEG"), noise(20_000 + 1_000 * i)));
            }
        }
    }
    files.push(("noisy_imagenette.csv".to_owned(), b"path,noisy_labels_0\n".to_vec()));
    files
}

/// Builds a `.tgz` holding `dataset_files()` under the folder `top`, as Imagenette's archives do.
pub fn dataset_tgz(top: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut dirs = vec![top.to_owned()];
    for (path, _) in dataset_files() {
        let mut parent = std::path::Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(format!("{top}/{}", p.display()));
            parent = p.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        builder.append_data(&mut header, &dir, std::io::empty()).expect("append a folder");
    }
    for (path, data) in dataset_files() {
        let mut header = Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, format!("{top}/{path}"), data.as_slice()).expect("append a file");
    }
    builder.into_inner().and_then(|gz| gz.finish()).expect("finish the archive")
}

/// One entry of a raw archive; names are written into the header byte for byte, unchecked.
pub enum Raw<'a> {
    /// A folder.
    Dir(&'a str),
    /// A regular file with its contents.
    File(&'a str, &'a [u8]),
    /// A symbolic link and its target.
    Symlink(&'a str, &'a str),
}

/// Builds a `.tgz` from raw entries, bypassing the `tar` crate's checks on names and link targets.
pub fn raw_tgz(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for entry in entries {
        let (name, kind, data, target): (&str, EntryType, &[u8], Option<&str>) = match entry {
            Raw::Dir(name) => (name, EntryType::Directory, &[], None),
            Raw::File(name, data) => (name, EntryType::Regular, data, None),
            Raw::Symlink(name, target) => (name, EntryType::Symlink, &[], Some(target)),
        };
        let mut header = Header::new_gnu();
        let slot = &mut header.as_old_mut().name;
        assert!(name.len() < slot.len(), "raw names must fit the 100-byte field: {name}");
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == EntryType::Regular { 0o644 } else { 0o755 });
        if let Some(target) = target {
            header.set_link_name_literal(target).expect("set the link target");
        }
        header.set_cksum();
        builder.append(&header, data).expect("append a raw entry");
    }
    let mut gz = builder.into_inner().expect("finish the tar stream");
    gz.flush().expect("flush");
    gz.finish().expect("finish the archive")
}

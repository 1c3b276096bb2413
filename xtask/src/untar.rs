//! Safe unpacking: every entry checked, into a staging folder that is renamed into place only when complete.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use flate2::read::GzDecoder;
use tar::EntryType;

/// The file that marks an unpacked data set as complete; it holds the MD5 of the archive it came from.
pub const MARKER: &str = ".tiny-complete";

/// Unpacks `archive` so that its contents end up as the folder `dest`, then writes [`MARKER`] holding `stamp`.
///
/// The archive goes into `.NAME.unpacking` beside `dest` first. When that folder then holds exactly one directory
/// (as Imagenette's archives do), that directory becomes `dest`; otherwise the staging folder itself does. An
/// existing `dest` is replaced only after the new one is complete, and on failure the staging folder is removed,
/// so no half-unpacked data set is ever left at `dest`. Returns the number of entries unpacked.
pub fn install(archive: &Path, dest: &Path, stamp: &str) -> Result<u64> {
    let name = dest.file_name().ok_or_else(|| anyhow!("{} names no folder", dest.display()))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = parent.join(format!(".{}.unpacking", name.to_string_lossy()));
    remove_any(&staging)?;
    fs::create_dir_all(&staging).with_context(|| format!("could not create {}", staging.display()))?;
    let result = unpack(archive, &staging).and_then(|count| {
        put_in_place(archive, &staging, dest, stamp)?;
        Ok(count)
    });
    if result.is_err() {
        // The staging folder may be gone already; either way the error that matters is the one being returned.
        let _ = remove_any(&staging);
    }
    result
}

/// Picks the folder that becomes `dest`, checks its links again from there, marks it complete and moves it.
fn put_in_place(archive: &Path, staging: &Path, dest: &Path, stamp: &str) -> Result<()> {
    let root = single_directory(staging)?;
    if let Some(top) = &root {
        let floor = 1;
        for link in symlinks_under(top)? {
            let target = fs::read_link(&link).with_context(|| format!("could not read {}", link.display()))?;
            let relative = link.strip_prefix(staging).unwrap_or(&link);
            check_symlink(archive, relative, &target, floor)?;
        }
    }
    let root = root.unwrap_or_else(|| staging.to_path_buf());
    fs::write(root.join(MARKER), stamp).with_context(|| format!("could not write {}", root.display()))?;
    remove_any(dest)?;
    fs::rename(&root, dest).with_context(|| format!("could not rename {} to {}", root.display(), dest.display()))?;
    if root != staging {
        fs::remove_dir(staging).with_context(|| format!("could not remove {}", staging.display()))?;
    }
    Ok(())
}

/// Unpacks every entry of `archive` into the existing folder `into`, refusing the whole archive at the first entry
/// that is absolute, contains `..`, passes through a symbolic link, or links to somewhere outside `into`.
/// Returns the number of entries unpacked.
pub fn unpack(archive: &Path, into: &Path) -> Result<u64> {
    let file = File::open(archive).with_context(|| format!("could not open {}", archive.display()))?;
    let mut reader = BufReader::new(file);
    let gzip =
        reader.fill_buf().with_context(|| format!("could not read {}", archive.display()))?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
    let mut tar = tar::Archive::new(reader);
    let mut count = 0;
    let entries = tar.entries().with_context(|| format!("could not read {}", archive.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("could not read {}", archive.display()))?;
        let path = entry.path().with_context(|| format!("unreadable entry name in {}", archive.display()))?;
        let path = check_path(archive, &path)?;
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
            EntryType::Symlink => {
                let target = link_name(archive, &entry, &path)?;
                check_symlink(archive, &path, &target, 0)?;
            }
            EntryType::Link => {
                let target = link_name(archive, &entry, &path)?;
                let target = check_path(archive, &target)?;
                check_no_symlink_on_the_way(archive, into, &target, true)?;
            }
            other => bail!("refusing `{}` in {}: unsupported entry type {other:?}", path.display(), archive.display()),
        }
        check_no_symlink_on_the_way(archive, into, &path, false)?;
        let unpacked = entry
            .unpack_in(into)
            .with_context(|| format!("could not unpack `{}` from {}", path.display(), archive.display()))?;
        if !unpacked {
            bail!("refusing `{}` in {}: it would land outside the destination", path.display(), archive.display());
        }
        count += 1;
    }
    if count == 0 {
        bail!("{} holds no entries: it is empty or not an archive of a data set", archive.display());
    }
    Ok(count)
}

/// Returns the relative path of an entry with `.` parts dropped, refusing absolute paths and `..`.
fn check_path(archive: &Path, path: &Path) -> Result<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                bail!("refusing `{}` in {}: the path contains `..`", path.display(), archive.display())
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("refusing `{}` in {}: the path is absolute", path.display(), archive.display())
            }
        }
    }
    Ok(clean)
}

/// Reads the target of a link entry.
fn link_name<R: Read>(archive: &Path, entry: &tar::Entry<R>, path: &Path) -> Result<PathBuf> {
    let target = entry
        .link_name()
        .with_context(|| format!("unreadable link target of `{}` in {}", path.display(), archive.display()))?;
    target
        .map(|t| t.into_owned())
        .ok_or_else(|| anyhow!("refusing `{}` in {}: a link without a target", path.display(), archive.display()))
}

/// Refuses a symbolic link at `path` whose `target` is absolute, climbs above `floor` levels below the unpacked
/// root, or uses `..` after a named part (which a symbolic link along the way could turn into an escape).
fn check_symlink(archive: &Path, path: &Path, target: &Path, floor: usize) -> Result<()> {
    let refuse = |why: &str| {
        anyhow!("refusing `{}` in {}: it links to `{}`, {why}", path.display(), archive.display(), target.display())
    };
    let mut depth = path.components().count().saturating_sub(1);
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err(refuse("an absolute path")),
            Component::CurDir => {}
            Component::ParentDir if descended => {
                return Err(refuse("which climbs back out of a named folder"));
            }
            Component::ParentDir if depth <= floor => {
                return Err(refuse("which is outside the destination"));
            }
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
        }
    }
    Ok(())
}

/// Refuses an entry whose folders (or, for a hard link target, the path itself) include a symbolic link that is
/// already unpacked, since writing through it could reach outside `into`.
fn check_no_symlink_on_the_way(archive: &Path, into: &Path, path: &Path, including_last: bool) -> Result<()> {
    let parts: Vec<_> = path.components().collect();
    let upto = if including_last { parts.len() } else { parts.len().saturating_sub(1) };
    let mut here = into.to_path_buf();
    for part in &parts[..upto] {
        here.push(part);
        if fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "refusing `{}` in {}: it goes through the symbolic link `{}`",
                path.display(),
                archive.display(),
                here.strip_prefix(into).unwrap_or(&here).display()
            );
        }
    }
    Ok(())
}

/// Returns the only entry of `folder` when it is a real directory, and `None` otherwise.
fn single_directory(folder: &Path) -> Result<Option<PathBuf>> {
    let mut entries = fs::read_dir(folder).with_context(|| format!("could not list {}", folder.display()))?;
    let (first, second) = (entries.next().transpose()?, entries.next().transpose()?);
    match (first, second) {
        (Some(only), None) if only.file_type()?.is_dir() => Ok(Some(only.path())),
        _ => Ok(None),
    }
}

/// Lists every symbolic link below `folder`, without following any.
fn symlinks_under(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut links = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                links.push(entry.path());
            } else if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(links)
}

/// Removes a file, link or folder at `path` if there is one.
fn remove_any(path: &Path) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    let result = if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    result.with_context(|| format!("could not remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symlink_ok(path: &str, target: &str, floor: usize) -> bool {
        check_symlink(Path::new("a.tgz"), Path::new(path), Path::new(target), floor).is_ok()
    }

    #[test]
    fn symlinks_may_point_within_but_not_above_the_root() {
        assert!(symlink_ok("top/sub/link", "../other/file", 0));
        assert!(symlink_ok("link", "sub/file", 0));
        assert!(!symlink_ok("link", "../escape", 0));
        assert!(!symlink_ok("top/link", "../../escape", 0));
        assert!(!symlink_ok("top/link", "/etc/passwd", 0));
        assert!(!symlink_ok("top/link", "sub/../../x", 0));
        assert!(!symlink_ok("top/link", "../sibling", 1));
    }

    #[test]
    fn entry_paths_drop_dots_and_refuse_parents() {
        let archive = Path::new("a.tgz");
        assert_eq!(check_path(archive, Path::new("./a/./b")).unwrap(), Path::new("a/b"));
        assert!(check_path(archive, Path::new("a/../../b")).is_err());
        assert!(check_path(archive, Path::new("/abs")).is_err());
    }
}

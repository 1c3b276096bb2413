//! Safe unpacking: every entry checked, into a staging folder that is renamed into place only when complete.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use flate2::read::GzDecoder;
use tar::EntryType;

/// The file that marks an unpacked data set as complete; it holds the MD5 of the archive it came from.
pub const MARKER: &str = ".tiny-complete";

/// How many times its own size an archive of unknown checksum may unpack to (see [`size_cap`]).
pub const CAP_RATIO: u64 = 20;

/// The least an archive of unknown checksum may always unpack to, 64 MiB.
pub const CAP_FLOOR: u64 = 64 << 20;

/// The most that an archive of `archive_bytes` bytes and no known checksum may unpack to: [`CAP_RATIO`] times its
/// size and at least [`CAP_FLOOR`]. JPEG data sets hardly compress (Imagenette unpacks to about 1.05 times its
/// archive), so only a decompression bomb comes near it.
pub fn size_cap(archive_bytes: u64) -> u64 {
    archive_bytes.saturating_mul(CAP_RATIO).max(CAP_FLOOR)
}

/// Returns the name of the folder at the top of `archive`, from its first entry, or `None` when the archive cannot
/// be read or its first entry is a file at the top (then it has no single top folder to keep).
pub fn top_folder(archive: &Path) -> Option<String> {
    let mut tar = tar::Archive::new(open_tar(archive, None).ok()?.0);
    let entry = tar.entries().ok()?.next()?.ok()?;
    let path = entry.path().ok()?;
    let clean = check_path(archive, &path).ok()?;
    let mut parts = clean.components();
    let first = parts.next()?.as_os_str().to_str()?.to_owned();
    let is_folder = parts.next().is_some() || entry.header().entry_type() == EntryType::Directory;
    is_folder.then_some(first)
}

/// Unpacks `archive` so that its contents end up as the folder `dest`, then writes [`MARKER`] holding `stamp`.
///
/// The archive goes into `.NAME.unpacking` beside `dest` first. When that folder then holds exactly one directory
/// (as Imagenette's archives do), that directory becomes `dest`; otherwise the staging folder itself does. An
/// existing `dest` is replaced only after the new one is complete, and on failure the staging folder is removed,
/// so no half-unpacked data set is ever left at `dest`. With a `cap`, unpacking stops with an error once the archive
/// has produced that many bytes. Returns the number of entries unpacked.
pub fn install(archive: &Path, dest: &Path, stamp: &str, cap: Option<u64>) -> Result<u64> {
    let name = dest.file_name().ok_or_else(|| anyhow!("{} names no folder", dest.display()))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = parent.join(format!(".{}.unpacking", name.to_string_lossy()));
    remove_any(&staging)?;
    fs::create_dir_all(&staging).with_context(|| format!("could not create {}", staging.display()))?;
    let result = unpack(archive, &staging, cap).and_then(|count| {
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
/// that is absolute, contains `..`, passes through a symbolic link, or links to somewhere outside `into`, and
/// stopping once it has produced more than `cap` bytes, when a cap is given. Returns the number of entries unpacked.
pub fn unpack(archive: &Path, into: &Path, cap: Option<u64>) -> Result<u64> {
    let (reader, over_cap) = open_tar(archive, cap)?;
    let refuse_bomb = |cap: u64| {
        anyhow!(
            "refusing {}: it unpacks to more than {cap} bytes ({CAP_RATIO} times its size, at least {CAP_FLOOR}), \
             which is how a decompression bomb looks; pass --md5 with the archive's checksum to unpack it uncapped",
            archive.display()
        )
    };
    let checked = |result: Result<u64>| match (result, cap) {
        (Err(_), Some(cap)) if over_cap.get() => Err(refuse_bomb(cap)),
        (result, _) => result,
    };
    checked(unpack_entries(archive, into, reader))
}

/// Opens `archive` as a tar stream, gzip-compressed or not, after checking that it starts with a tar header, and
/// counts the bytes it produces against `cap`; the flag turns true once the cap is passed.
fn open_tar(archive: &Path, cap: Option<u64>) -> Result<(Box<dyn Read>, OverCap)> {
    let file = File::open(archive).with_context(|| format!("could not open {}", archive.display()))?;
    let mut reader = BufReader::new(file);
    let start = reader.fill_buf().with_context(|| format!("could not read {}", archive.display()))?;
    let gzip = start.starts_with(&[0x1f, 0x8b]);
    let leading: Vec<u8> = start.iter().take(4).copied().collect();
    let over_cap = Rc::new(Cell::new(false));
    let stream: Box<dyn Read> = if gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
    let mut stream = Capped { inner: stream, left: cap.unwrap_or(u64::MAX), over: Rc::clone(&over_cap) };
    let mut header = Vec::with_capacity(512);
    let read = (&mut stream).take(512).read_to_end(&mut header);
    read.with_context(|| match gzip {
        true => format!("could not decompress {}: its gzip data is damaged", archive.display()),
        false => format!("could not read {}", archive.display()),
    })?;
    if !header.iter().all(|&b| b == 0) && !is_tar_header(&header) {
        let hex: Vec<String> = leading.iter().map(|b| format!("{b:02x}")).collect();
        bail!(match gzip {
            true => format!("{} is gzip-compressed but holds no tar archive", archive.display()),
            false => format!(
                "{} is neither a gzip-compressed tar (.tgz) nor a tar archive: it begins with the bytes {}",
                archive.display(),
                hex.join(" ")
            ),
        });
    }
    Ok((Box::new(Cursor::new(header).chain(stream)), over_cap))
}

/// Tells whether `block` is a whole 512-byte tar header whose checksum (the byte sum with the checksum field read
/// as spaces, stored in octal at bytes 148..156) holds.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() != 512 {
        return false;
    }
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else {
        return false;
    };
    let sum: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    sum == stored
}

/// Set once a [`Capped`] reader has passed its cap.
type OverCap = Rc<Cell<bool>>;

/// A reader that fails once more than `left` bytes have passed through it, and says so in `over`.
struct Capped<R> {
    inner: R,
    left: u64,
    over: OverCap,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => self.left = left,
            None => {
                self.over.set(true);
                return Err(io::Error::other("the archive unpacks to more than its size cap"));
            }
        }
        Ok(n)
    }
}

/// Unpacks the entries of the tar stream `reader` (read from `archive`) into `into`; see [`unpack`].
fn unpack_entries(archive: &Path, into: &Path, reader: Box<dyn Read>) -> Result<u64> {
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

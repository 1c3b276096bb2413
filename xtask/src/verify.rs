//! Archive verification: the size and the full-file MD5 checked before anything is unpacked.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};

/// What a verified archive must look like; a field left as `None` is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The size in bytes.
    pub size: Option<u64>,
    /// The MD5 of the whole file, as 32 lowercase hexadecimal digits.
    pub md5: Option<String>,
}

impl Expected {
    /// Returns the same expectations with `size` filled in from `fallback` when it was unknown.
    pub fn with_size_fallback(&self, fallback: Option<u64>) -> Expected {
        Expected { size: self.size.or(fallback), md5: self.md5.clone() }
    }
}

/// Normalises an MD5 given on the command line to lowercase hex, refusing anything but 32 hexadecimal digits.
pub fn parse_md5(text: &str) -> Result<String> {
    parse_hex(text, 32, "an MD5")
}

/// Normalises a hash given on the command line to lowercase hex, refusing anything but `digits` hexadecimal digits;
/// `what` names the hash in the error ("an MD5").
pub fn parse_hex(text: &str, digits: usize, what: &str) -> Result<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{text}` is not {what}: expected {digits} hexadecimal digits");
    }
    Ok(text)
}

/// Computes the MD5 of the whole file at `path`, as lowercase hex.
pub fn md5_file(path: &Path) -> Result<String> {
    hash_file::<Md5>(path)
}

/// Computes the hash `D` (MD5, SHA-256) of the whole file at `path` in 64 KiB reads, as lowercase hex.
pub fn hash_file<D: Digest>(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut hasher = D::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("could not read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the size and then the MD5 of the file at `path`; the error names the file, what was expected and what
/// was found.
pub fn check(path: &Path, expected: &Expected) -> Result<()> {
    let found = std::fs::metadata(path).with_context(|| format!("could not read {}", path.display()))?.len();
    if let Some(size) = expected.size
        && found != size
    {
        bail!("size mismatch for {}: expected {size} bytes, found {found} bytes", path.display());
    }
    if let Some(md5) = &expected.md5 {
        let actual = md5_file(path)?;
        if &actual != md5 {
            bail!("checksum mismatch for {}: expected MD5 {md5}, found MD5 {actual}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_the_empty_string_is_the_well_known_one() {
        let path = std::env::temp_dir().join(format!("xtask-verify-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let md5 = md5_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(md5, "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn parse_md5_accepts_uppercase_and_refuses_short_text() {
        assert_eq!(parse_md5("E793B78CC4C9E9A4CCC0C1155377A412").unwrap(), "e793b78cc4c9e9a4ccc0c1155377a412");
        assert!(parse_md5("e793b78c").is_err());
    }
}

//! Test helpers: self-cleaning temporary folders and small image fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new, empty, uniquely named folder.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tiny-data-test-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Returns the folder's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` to `path`, creating parent folders.
pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write fixture");
}

/// Encodes a `w x h` RGB image whose pixel (x, y) is `f(x, y)` as JPEG bytes.
pub fn jpeg_bytes(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    let mut out = Vec::new();
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)).expect("encode jpeg");
    out
}

/// Writes a JPEG with a smooth gradient to `path`.
pub fn write_jpeg(path: &Path, w: u32, h: u32) {
    write(path, &jpeg_bytes(w, h, |x, y| [(x * 3) as u8, (y * 5) as u8, 128]));
}

/// Creates `root/<split>/<class>/<i>.jpg` for each split, class and `0..per_class`.
pub fn make_folder(root: &Path, splits: &[&str], classes: &[&str], per_class: usize) {
    for split in splits {
        for class in classes {
            for i in 0..per_class {
                write_jpeg(&root.join(split).join(class).join(format!("{i}.jpg")), 24, 16);
            }
        }
    }
}

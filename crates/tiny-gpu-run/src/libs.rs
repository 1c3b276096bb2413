//! The CUDA libraries the run's binaries load: found as cudarc would find them, CUDA 13 preferred, stubs refused.
//!
//! cudarc (built for CUDA 13.0) dlopens each library under a list of names, the plain `libnvrtc.so` first. What
//! that finds depends on `LD_LIBRARY_PATH` and the loader's cache, so a CUDA 12 NVRTC from a system toolkit can
//! win over the CUDA 13 one of a pip wheel, and a toolkit's `stubs/libcuda.so` (a link-time stand-in that fails
//! every call) over the driver. So the run picks each library itself: the driver's libcuda that is not a stub;
//! for NVRTC and cuBLAS the first `.so.13` found anywhere (`LD_LIBRARY_PATH`, the loader's cache, the system's,
//! the CUDA toolkits' and the Python packages' folders), else what cudarc's names find. It links each choice
//! under cudarc's first name into a folder of the run's own, first on the `LD_LIBRARY_PATH` of the binaries, and
//! reads the versions the libraries report (NVRTC's `nvrtcVersion`, the driver's `cuDriverGetVersion`). With
//! the fake driver (`cargo xtask fake-cuda`, for CI) NVRTC and cuBLAS are the fake's own, whatever a Python
//! package beside it holds.

use std::collections::BTreeMap;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// The libraries cudarc loads, by the name it gives them.
pub const LIBS: [&str; 3] = ["cuda", "nvrtc", "cublas"];

/// The folders the loader searches after `LD_LIBRARY_PATH` and its cache.
const DEFAULT_DIRS: [&str; 6] =
    ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// Where a driver's libcuda lives besides the loader's own folders (containers, WSL).
const DRIVER_DIRS: [&str; 3] = ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/wsl/lib"];

/// Where CUDA toolkits and Python environments keep NVRTC and cuBLAS (`*` matches within one folder name).
const PACKAGE_DIRS: [&str; 9] = [
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/*/lib",
    "/usr/local/cuda-*/lib64",
    "/usr/local/cuda-*/targets/*/lib",
    "/opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib",
    "/opt/*/lib/python3*/site-packages/nvidia/*/lib",
    "/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
    "/usr/local/lib/python3*/site-packages/nvidia/*/lib",
    "/usr/lib/python3*/dist-packages/nvidia/*/lib",
];

/// The names cudarc 0.19, built for CUDA 13.0, tries for library `lib`, in its order.
pub fn cudarc_names(lib: &str) -> Vec<String> {
    let mut names: Vec<String> = ["", "64", "64_13", "64_130", "64_130_0", "64_10", "64_11", "64_12", "64_9"]
        .iter()
        .map(|suffix| format!("lib{lib}{suffix}.so"))
        .collect();
    names.extend(["13", "12", "11", "10", "9", "1"].iter().map(|v| format!("lib{lib}.so.{v}")));
    names
}

/// The major version in a library's file name (`libnvrtc.so.13.0.88`: 13), following a symbolic link when the
/// name has none (`libnvrtc.so`).
pub fn major(path: &Path) -> Option<u32> {
    let from_name = |p: &Path| -> Option<u32> {
        let (_, after) = p.file_name()?.to_str()?.split_once(".so.")?;
        after.split('.').next()?.parse().ok()
    };
    from_name(path).or_else(|| from_name(&std::fs::canonicalize(path).ok()?))
}

/// Whether a libcuda is the fake driver of `cargo xtask fake-cuda`: a name that leads to `libfakecuda.so`, which
/// is NVRTC and cuBLAS too. A real NVRTC beside it would compile kernels the fake cannot load.
pub fn is_fake(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p.file_name().is_some_and(|n| n == "libfakecuda.so"))
}

/// Whether a libcuda is a toolkit's link stub: under a `stubs` folder, itself or where its links lead.
pub fn is_stub(path: &Path) -> bool {
    let under = |p: &Path| p.components().any(|c| c.as_os_str() == "stubs");
    under(path) || std::fs::canonicalize(path).is_ok_and(|p| under(&p))
}

/// The folders that `pattern` names, `*` matching any part of one folder's name.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for dir in found {
            match part.split_once('*') {
                None => next.push(dir.join(part)),
                Some((head, tail)) => {
                    let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| n.len() >= head.len() + tail.len() && n.starts_with(head) && n.ends_with(tail))
                        .collect();
                    // Newer versions first (cuda-13.0 before cuda-12.8).
                    names.sort_by(|a, b| b.cmp(a));
                    next.extend(names.into_iter().map(|n| dir.join(n)));
                }
            }
        }
        found = next;
    }
    found.into_iter().filter(|d| d.is_dir()).collect()
}

/// Where to look, in order, and what each place is called in the log.
pub struct Places {
    pub ld_library_path: Vec<PathBuf>,
    /// The loader's cache: file name to path (64-bit entries of `ldconfig -p`).
    pub cache: BTreeMap<String, PathBuf>,
    pub packages: Vec<PathBuf>,
}

impl Places {
    /// This machine's places: `ld_library_path`, the loader's cache, and the toolkits' and Python packages'
    /// folders, with `sites` (the Python interpreter's site-packages folders) added.
    pub fn here(ld_library_path: &str, sites: &[PathBuf]) -> Places {
        let mut packages: Vec<PathBuf> = PACKAGE_DIRS.iter().flat_map(|p| glob(p)).collect();
        for site in sites {
            packages.extend(glob(&format!("{}/nvidia/*/lib", site.display())));
        }
        let mut seen = std::collections::HashSet::new();
        packages.retain(|d| seen.insert(d.clone()));
        Places {
            ld_library_path: ld_library_path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect(),
            cache: loader_cache(),
            packages,
        }
    }

    /// What dlopen finds under `name` now: `LD_LIBRARY_PATH`, then the cache, then the default folders.
    fn dlopen(&self, name: &str) -> Option<(PathBuf, &'static str)> {
        let in_dir = |d: &Path| Some(d.join(name)).filter(|p| p.exists());
        self.ld_library_path
            .iter()
            .find_map(|d| in_dir(d))
            .map(|p| (p, "LD_LIBRARY_PATH"))
            .or_else(|| self.cache.get(name).map(|p| (p.clone(), "the loader's cache")))
            .or_else(|| DEFAULT_DIRS.iter().find_map(|d| in_dir(Path::new(d))).map(|p| (p, "the system's folders")))
    }

    /// Every file under `names` in the loader's places, then in `extra` folders, in that order.
    fn everywhere(&self, names: &[String], extra: &[PathBuf]) -> Vec<(PathBuf, &'static str)> {
        let mut found: Vec<(PathBuf, &'static str)> = Vec::new();
        for name in names {
            found.extend(
                self.ld_library_path
                    .iter()
                    .map(|d| d.join(name))
                    .filter(|p| p.exists())
                    .map(|p| (p, "LD_LIBRARY_PATH")),
            );
            found.extend(self.cache.get(name).map(|p| (p.clone(), "the loader's cache")));
        }
        for dir in DEFAULT_DIRS.iter().map(PathBuf::from).chain(extra.iter().cloned()) {
            found.extend(
                names.iter().map(|n| dir.join(n)).filter(|p| p.exists()).map(|p| (p, "a CUDA or Python folder")),
            );
        }
        found
    }
}

/// The 64-bit entries of the loader's cache, by file name.
fn loader_cache() -> BTreeMap<String, PathBuf> {
    let out = ["ldconfig", "/sbin/ldconfig"].iter().find_map(|l| Command::new(l).arg("-p").output().ok());
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut cache = BTreeMap::new();
    for line in text.lines() {
        let Some((left, path)) = line.split_once("=>") else { continue };
        let Some(name) = left.split_whitespace().next() else { continue };
        if left.contains("64") {
            cache.entry(name.to_owned()).or_insert_with(|| PathBuf::from(path.trim()));
        }
    }
    cache
}

/// The libraries chosen for the run, and what its binaries need in their environment to load them.
#[derive(Debug)]
pub struct Chosen {
    /// The path of each of [`LIBS`], where one was found.
    pub paths: BTreeMap<&'static str, PathBuf>,
    /// `LD_LIBRARY_PATH` for the binaries: the folder of links first.
    pub ld_library_path: String,
    /// Every library found, the choice and why, for the log.
    pub log: String,
    /// The same as JSON, with the versions the libraries report.
    pub figures: Value,
}

/// Chooses the libraries (see the module docs) and links them into `links`, a folder of the run's own.
pub fn choose(places: &Places, ld_library_path: &str, links: &Path) -> std::io::Result<Chosen> {
    std::fs::create_dir_all(links)?;
    let mut log = String::new();
    let (mut paths, mut figures) = (BTreeMap::new(), serde_json::Map::new());
    let mut refused = Vec::new();
    let mut first = vec![links.to_path_buf()];
    // The fake driver's folder, when the driver is the fake.
    let mut fake: Option<PathBuf> = None;
    for lib in LIBS {
        let names = cudarc_names(lib);
        let now = names.iter().find_map(|n| places.dlopen(n));
        let extra: Vec<PathBuf> =
            if lib == "cuda" { DRIVER_DIRS.iter().map(PathBuf::from).collect() } else { places.packages.clone() };
        let mut all = places.everywhere(&names, &extra);
        let mut seen = std::collections::HashSet::new();
        all.retain(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
        for (path, _) in all.iter().filter(|(p, _)| lib == "cuda" && is_stub(p)) {
            log += &format!("lib{lib}: refused {} (a toolkit's stub, not a driver)\n", path.display());
            refused.push(path.display().to_string());
        }
        all.retain(|(p, _)| lib != "cuda" || !is_stub(p));
        let now_ok = now.clone().filter(|(p, _)| lib != "cuda" || !is_stub(p));
        let beside_fake = fake.as_ref().map(|dir| dir.join(format!("lib{lib}.so"))).filter(|p| p.exists());
        let pick = match lib {
            "cuda" => now_ok.or_else(|| all.first().cloned()),
            _ if beside_fake.is_some() => beside_fake.map(|p| (p, "the fake driver's folder")),
            _ => all.iter().find(|(p, _)| major(p) == Some(13)).cloned().or(now_ok).or_else(|| all.first().cloned()),
        };
        if let Some((path, _)) = pick.as_ref().filter(|_| lib == "cuda")
            && is_fake(path)
        {
            fake = path.parent().map(Path::to_path_buf);
        }
        for (path, place) in &all {
            let version = major(path).map_or("no version in its name".to_owned(), |m| format!("version {m}"));
            log += &format!("lib{lib}: found {} (in {place}, {version})\n", path.display());
        }
        let Some((path, place)) = pick else {
            log += &format!("lib{lib}: NOT FOUND under any of cudarc's names\n");
            figures.insert(format!("lib{lib}"), Value::Null);
            continue;
        };
        let path = std::path::absolute(&path)?;
        let what = match &now {
            Some((p, _)) if *p == path => "what cudarc's names find".to_owned(),
            Some((p, _)) => format!("instead of {}, which cudarc's names would find", p.display()),
            None => "which cudarc's names would not find".to_owned(),
        };
        log += &format!("lib{lib}: using {} (in {place}), {what}\n", path.display());
        if lib != "cuda" && major(&path) != Some(13) {
            log += &format!("lib{lib}: warning: no CUDA 13 library was found, and tiny's cudarc is built for 13.0\n");
        }
        let link = links.join(format!("lib{lib}.so"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link)?;
        if let Some(dir) = path.parent().filter(|_| lib != "cuda")
            && !first.iter().any(|d| d == dir)
        {
            // Its neighbours (cuBLASLt, NVRTC's builtins) load from its folder.
            first.push(dir.to_path_buf());
        }
        figures.insert(format!("lib{lib}"), json!(path.display().to_string()));
        figures.insert(format!("lib{lib}_major"), json!(major(&path)));
        paths.insert(lib, path);
    }
    let versions = versions(&paths);
    log += &format!("versions: {versions}\n");
    let mut dirs: Vec<String> = first.iter().map(|d| d.display().to_string()).collect();
    for d in ld_library_path.split(':').filter(|d| !d.is_empty()) {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_owned());
        }
    }
    let ld_library_path = dirs.join(":");
    figures.insert("versions".into(), versions);
    figures.insert("refused".into(), json!(refused));
    figures.insert("links".into(), json!(links.display().to_string()));
    figures.insert("LD_LIBRARY_PATH".into(), json!(ld_library_path));
    Ok(Chosen { paths, ld_library_path, log, figures: Value::Object(figures) })
}

/// The versions the chosen libraries report of themselves, where they load: NVRTC's, the CUDA version the
/// driver supports, cuBLAS's.
fn versions(paths: &BTreeMap<&'static str, PathBuf>) -> Value {
    let mut v = serde_json::Map::new();
    if let Some(path) = paths.get("nvrtc") {
        let read = call(
            path,
            b"nvrtcVersion\0",
            |f: libloading::Symbol<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int>| {
                let (mut major, mut minor) = (0, 0);
                // SAFETY: nvrtcVersion writes two ints and reads nothing else.
                (unsafe { f(&mut major, &mut minor) } == 0).then(|| format!("{major}.{minor}"))
            },
        );
        v.insert("nvrtc".into(), json!(read));
    }
    if let Some(path) = paths.get("cuda") {
        let read =
            call(path, b"cuDriverGetVersion\0", |f: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> c_int>| {
                let mut version = 0;
                // SAFETY: cuDriverGetVersion writes one int; it needs no cuInit.
                (unsafe { f(&mut version) } == 0).then(|| format!("{}.{}", version / 1000, version % 1000 / 10))
            });
        v.insert("driver_cuda".into(), json!(read));
    }
    if let Some(path) = paths.get("cublas") {
        let read = call(
            path,
            b"cublasGetProperty\0",
            |f: libloading::Symbol<unsafe extern "C" fn(c_int, *mut c_int) -> c_int>| {
                let mut parts = [0; 3];
                // SAFETY: cublasGetProperty writes one int for each of MAJOR_VERSION (0), MINOR_VERSION and PATCH_LEVEL.
                let ok = (0..3).all(|i| unsafe { f(i as c_int, &mut parts[i]) } == 0);
                ok.then(|| format!("{}.{}.{}", parts[0], parts[1], parts[2]))
            },
        );
        v.insert("cublas".into(), json!(read));
    }
    Value::Object(v)
}

/// Loads the library at `path` and calls `read` with its function `symbol`; `None` where either is missing.
fn call<F, R>(path: &Path, symbol: &[u8], read: impl FnOnce(libloading::Symbol<F>) -> Option<R>) -> Option<R> {
    // SAFETY: loading runs the library's initialisers; these are the CUDA libraries the run is about to use anyway.
    let lib = unsafe { libloading::Library::new(path) }.ok()?;
    // SAFETY: the caller names the C signature the library documents for `symbol`.
    let f = unsafe { lib.get::<F>(symbol) }.ok()?;
    let out = read(f);
    // Kept loaded: unloading a CUDA library can run code that expects the process to be ending.
    std::mem::forget(lib);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cudarc_tries_the_plain_name_first_and_so_13_before_so_12() {
        let names = cudarc_names("nvrtc");
        assert_eq!(names[0], "libnvrtc.so");
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert!(at("libnvrtc.so.13") < at("libnvrtc.so.12") && at("libnvrtc.so.12") < at("libnvrtc.so.1"));
    }

    #[test]
    fn the_major_version_comes_from_the_name() {
        assert_eq!(major(Path::new("/x/libnvrtc.so.13.0.88")), Some(13));
        assert_eq!(major(Path::new("/x/libcublas.so.12")), Some(12));
        assert_eq!(major(Path::new("/nonexistent/libnvrtc.so")), None);
        assert!(is_stub(Path::new("/usr/local/cuda/lib64/stubs/libcuda.so")));
        assert!(!is_stub(Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1")));
    }

    /// The fake driver on `LD_LIBRARY_PATH` and a CUDA 13 wheel's NVRTC and cuBLAS among the packages (a machine
    /// where PyTorch is installed): the fake's own are used, not the wheel's, which the fake cannot run.
    #[test]
    fn the_fake_driver_brings_its_own_nvrtc_and_cublas() {
        let root = std::env::temp_dir().join(format!("tiny-libs-test-{}", std::process::id()));
        let (fake, wheel) = (root.join("fake-cuda"), root.join("site/nvidia/cu13/lib"));
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::create_dir_all(&wheel).unwrap();
        std::fs::write(fake.join("libfakecuda.so"), b"").unwrap();
        for lib in LIBS {
            std::os::unix::fs::symlink("libfakecuda.so", fake.join(format!("lib{lib}.so"))).unwrap();
        }
        for lib in ["nvrtc", "cublas"] {
            std::fs::write(wheel.join(format!("lib{lib}.so.13")), b"").unwrap();
        }
        let places =
            Places { ld_library_path: vec![fake.clone()], cache: BTreeMap::new(), packages: vec![wheel.clone()] };
        let chosen = choose(&places, &fake.display().to_string(), &root.join("links")).unwrap();
        for lib in LIBS {
            assert_eq!(chosen.paths[lib], fake.join(format!("lib{lib}.so")), "lib{lib}:\n{}", chosen.log);
        }
        // Without the fake, the wheel's CUDA 13 libraries win over the unversioned ones.
        std::fs::remove_file(fake.join("libcuda.so")).unwrap();
        std::fs::write(fake.join("libcuda.so"), b"").unwrap();
        let chosen = choose(&places, &fake.display().to_string(), &root.join("links")).unwrap();
        assert_eq!(chosen.paths["nvrtc"], wheel.join("libnvrtc.so.13"), "{}", chosen.log);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

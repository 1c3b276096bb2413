//! What the probe phase learns without the GPU: whether the sources match, the tools at hand, nvidia-smi's view.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Checks the `sha256sum` lines of `list` (`<hex>  <path>`, paths relative to `root`): the files that differ or
/// are missing, one line each, or the error that kept the list from being read.
pub fn changed_sources(root: &Path, list: &Path) -> Result<(usize, Vec<String>), String> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut changed = Vec::new();
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((hex, path)) = line.split_once("  ") else {
            return Err(format!("{}: not a sha256sum line: {line}", list.display()));
        };
        checked += 1;
        match std::fs::read(root.join(path)) {
            Ok(bytes) => {
                let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
                if got != hex {
                    changed.push(format!("{path}: changed since the bundle was built"));
                }
            }
            Err(e) => changed.push(format!("{path}: {e}")),
        }
    }
    Ok((checked, changed))
}

/// The fields nvidia-smi is asked for, in order, with the names summary.json gives them.
pub const SMI_FIELDS: [(&str, &str); 11] = [
    ("name", "gpu"),
    ("driver_version", "driver"),
    ("memory.total", "memory"),
    ("compute_cap", "compute_cap"),
    ("clocks.sm", "sm_clock"),
    ("clocks.max.sm", "sm_clock_max"),
    ("clocks.mem", "mem_clock"),
    ("power.draw", "power_draw"),
    ("power.limit", "power_limit"),
    ("temperature.gpu", "temperature"),
    ("pstate", "pstate"),
];

/// nvidia-smi's `--query-gpu` argument for [`SMI_FIELDS`].
pub fn smi_query() -> String {
    format!("--query-gpu={}", SMI_FIELDS.map(|(f, _)| f).join(","))
}

/// One JSON object per GPU from nvidia-smi's `--format=csv,noheader` lines (as many fields as asked for).
pub fn smi_json(csv: &str) -> Vec<Value> {
    csv.lines()
        .map(|l| l.split(", ").map(str::trim).collect::<Vec<_>>())
        .filter(|fields| fields.len() == SMI_FIELDS.len())
        .map(|fields| {
            let pairs = SMI_FIELDS.iter().zip(fields).map(|((_, key), v)| ((*key).to_owned(), json!(v)));
            Value::Object(pairs.collect())
        })
        .collect()
}

/// Where `tool` is: on `PATH`, else in the CUDA toolkits' and Nsight's usual folders.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| is_executable(p));
    on_path.or_else(|| {
        [
            "/usr/local/cuda/bin",
            "/usr/local/cuda-*/bin",
            "/opt/nvidia/nsight-compute/*",
            "/usr/local/cuda/nsight-compute*",
        ]
        .iter()
        .flat_map(|p| crate::libs::glob(p))
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Python interpreter: `TINY_RUN_PYTHON` when set (even where it is missing, which then says so), else
/// PyTorch's environment on the GPU machine, else `python3` on `PATH`.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TINY_RUN_PYTHON") {
        let p = PathBuf::from(p);
        return if p.components().count() > 1 {
            Some(p).filter(|p| is_executable(p))
        } else {
            find_tool(&p.to_string_lossy())
        };
    }
    Some(PathBuf::from("/opt/torch/.venv/bin/python")).filter(|p| is_executable(p)).or_else(|| find_tool("python3"))
}

/// The Python code that prints the interpreter's site-packages folders, one per line, in the order Python imports
/// from them: `sys.path`'s (where `PYTHONPATH` comes before the system's), then any the site module adds.
pub const PYTHON_SITES: &str = "import site, sys
dirs = [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]
print('\\n'.join(dirs + list(getattr(site, 'getsitepackages', lambda: [])()) + [site.getusersitepackages()]))";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_become_one_object_per_gpu() {
        let line =
            "NVIDIA H100 80GB HBM3, 580.65.06, 81559 MiB, 9.0, 345 MHz, 1980 MHz, 2619 MHz, 71.2 W, 700.00 W, 31, P0";
        let gpus = smi_json(&format!("{line}\nbad line\n"));
        assert_eq!(gpus.len(), 1);
        assert_eq!((gpus[0]["gpu"].as_str(), gpus[0]["pstate"].as_str()), (Some("NVIDIA H100 80GB HBM3"), Some("P0")));
        assert_eq!(gpus[0]["power_limit"], "700.00 W");
        assert!(smi_query().starts_with("--query-gpu=name,driver_version,"));
    }

    #[test]
    fn sources_that_changed_or_went_missing_are_named() {
        let dir = std::env::temp_dir().join(format!("gpu-run-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), "x").unwrap();
        std::fs::write(dir.join("b"), "y").unwrap();
        let hex = |s: &str| Sha256::digest(s).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let list = dir.join("list");
        std::fs::write(&list, format!("{}  a\n{}  b\n{}  c\n", hex("x"), hex("z"), hex("w"))).unwrap();
        let (checked, changed) = changed_sources(&dir, &list).unwrap();
        assert_eq!(checked, 3);
        assert_eq!(changed.len(), 2);
        assert!(changed[0].starts_with("b: changed") && changed[1].starts_with("c: "), "{changed:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

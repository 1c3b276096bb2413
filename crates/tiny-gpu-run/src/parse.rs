//! What the run reads out of its steps' logs: JSON lines, the test harness's counts, ncu's per-kernel CSV.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The most JSON lines kept as one step's figures (a training log may print one per epoch).
const MAX_FIGURES: usize = 50;

/// The lines of `log` that look like JSON objects: parsed, or kept as a string when they are not strict JSON
/// (a `NaN`, for instance). The last [`MAX_FIGURES`] of them.
pub fn json_lines(log: &str) -> Vec<Value> {
    let mut found: Vec<Value> = log
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{') && l.ends_with('}'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|_| Value::String(l.to_owned())))
        .collect();
    let skip = found.len().saturating_sub(MAX_FIGURES);
    found.drain(..skip);
    found
}

/// The Rust test harness's `test result:` lines of a log, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TestCounts {
    pub suites: usize,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Device tests that printed that they skipped for want of a GPU.
    pub cuda_skips: usize,
}

impl TestCounts {
    pub fn of(log: &str) -> TestCounts {
        let mut counts = TestCounts::default();
        for line in log.lines() {
            if line.contains("skipped, no usable CUDA GPU") {
                counts.cuda_skips += 1;
            }
            let Some(rest) = line.strip_prefix("test result:") else { continue };
            counts.suites += 1;
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
                let n: usize = n.parse().unwrap_or(0);
                match what {
                    "passed" => counts.passed += n,
                    "failed" => counts.failed += n,
                    "ignored" => counts.ignored += n,
                    _ => {}
                }
            }
        }
        counts
    }
}

/// One kernel's share of a step's GPU time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelRow {
    pub name: String,
    pub calls: u64,
    pub total_us: f64,
}

/// Sorts kernel rows by time, longest first.
pub fn by_time(mut rows: Vec<KernelRow>) -> Vec<KernelRow> {
    rows.sort_by(|a, b| b.total_us.total_cmp(&a.total_us).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// The kernels of ncu's `--csv` output for `--metrics gpu__time_duration.sum`, summed by kernel name: one row per
/// kernel launch, with the columns `Kernel Name`, `Metric Name`, `Metric Unit` and `Metric Value`. Other lines
/// (ncu's `==PROF==` notes, the program's own output) are left alone.
pub fn ncu_kernels(log: &str) -> Vec<KernelRow> {
    let mut header: Option<Vec<String>> = None;
    let mut sums: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for line in log.lines().filter(|l| l.starts_with('"')) {
        let fields = csv_fields(line);
        let Some(h) = &header else {
            if fields.iter().any(|f| f == "Kernel Name") && fields.iter().any(|f| f == "Metric Value") {
                header = Some(fields);
            }
            continue;
        };
        let col = |name: &str| h.iter().position(|f| f == name).and_then(|i| fields.get(i));
        let (Some(kernel), Some(metric), Some(value)) = (col("Kernel Name"), col("Metric Name"), col("Metric Value"))
        else {
            continue;
        };
        if metric != "gpu__time_duration.sum" {
            continue;
        }
        let Ok(value) = value.replace(',', "").parse::<f64>() else { continue };
        let scale = match col("Metric Unit").map(String::as_str) {
            Some("nsecond" | "ns") | None => 1e-3,
            Some("usecond" | "us") => 1.0,
            Some("msecond" | "ms") => 1e3,
            Some("second" | "s") => 1e6,
            Some(_) => continue,
        };
        let entry = sums.entry(kernel.clone()).or_default();
        entry.0 += 1;
        entry.1 += value * scale;
    }
    by_time(sums.into_iter().map(|(name, (calls, total_us))| KernelRow { name, calls, total_us }).collect())
}

/// The kernel rows that torch_profile.py printed as its JSON line `{"kernels": [{name, calls, total_us}, ...]}`.
pub fn torch_kernels(figures: &[Value]) -> Vec<KernelRow> {
    let Some(rows) = figures.iter().rev().find_map(|f| f.get("kernels")?.as_array()) else { return Vec::new() };
    by_time(
        rows.iter()
            .filter_map(|r| {
                Some(KernelRow {
                    name: r.get("name")?.as_str()?.to_owned(),
                    calls: r.get("calls")?.as_u64()?,
                    total_us: r.get("total_us")?.as_f64()?,
                })
            })
            .collect(),
    )
}

/// The fields of one CSV line whose fields are double-quoted (a doubled quote stands for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == ',' {
                break;
            }
            field.push(c);
        }
        fields.push(field);
        if chars.peek().is_none() {
            return fields;
        }
    }
}

/// The last `lines` lines of `log`, each cut to `width` characters, without the runner's own `#` header.
pub fn tail(log: &str, lines: usize, width: usize) -> String {
    let kept: Vec<&str> = log.lines().filter(|l| !l.starts_with("# ")).collect();
    let from = kept.len().saturating_sub(lines);
    kept[from..].iter().map(|l| l.chars().take(width).collect::<String>()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_parsed_and_the_rest_kept_as_strings() {
        let log = "step ...\n{\"ms_per_step\":3.1}\n  {\"x\":NaN}  \n{not json\n";
        let found = json_lines(log);
        assert_eq!(found, vec![serde_json::json!({"ms_per_step": 3.1}), Value::String("{\"x\":NaN}".into())]);
    }

    #[test]
    fn test_counts_add_up_every_suite() {
        let log = "running 3 tests\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n\
                   t: skipped, no usable CUDA GPU (no libcuda)\n\
                   test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s\n";
        let c = TestCounts::of(log);
        assert_eq!(c, TestCounts { suites: 2, passed: 4, failed: 2, ignored: 1, cuda_skips: 1 });
    }

    #[test]
    fn ncu_rows_are_summed_by_kernel_in_microseconds() {
        let log = r#"==PROF== Connected to process 1
{"model":"resnet18"}
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","1","bench_step","h","im2col_f32","1","13","(256, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","2,000"
"1","1","bench_step","h","sm90_xmma_gemm_f32f32, ""tn""","1","13","(128, 1, 1)","(8, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","5.5"
"2","1","bench_step","h","im2col_f32","1","13","(256, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","1000"
"#;
        let rows = ncu_kernels(log);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], KernelRow { name: "sm90_xmma_gemm_f32f32, \"tn\"".into(), calls: 1, total_us: 5.5 });
        assert_eq!(rows[1], KernelRow { name: "im2col_f32".into(), calls: 2, total_us: 3.0 });
    }

    #[test]
    fn a_tail_leaves_out_the_header_and_cuts_long_lines() {
        assert_eq!(tail("# step: x\na\nbbbb\nc\n", 2, 2), "bb\nc");
    }
}

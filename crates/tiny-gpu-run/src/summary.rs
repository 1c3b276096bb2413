//! The run's record: each step's status and figures, written whole to summary.json after every change.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::parse::{KernelRow, TestCounts};

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Passed,
    /// Not run for a reason that does not fail the run: an optional tool is missing, or it was not asked for.
    Skipped,
    Failed,
    Timeout,
    /// Left out: no time was left, the gate failed, or the run was interrupted first.
    NotRun,
    /// Stopped while it ran, because the run was interrupted (SIGINT or SIGTERM).
    Interrupted,
}

impl Status {
    /// Whether the step keeps the run from passing.
    pub fn is_bad(self) -> bool {
        !matches!(self, Status::Passed | Status::Skipped)
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Passed => "passed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::NotRun => "not_run",
            Status::Interrupted => "interrupted",
        }
    }
}

/// One step of the run, as summary.json shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Its place in the run, from 1.
    pub step: usize,
    /// `phase/what`, the name `--only` takes.
    pub name: String,
    pub phase: &'static str,
    pub status: Status,
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub seconds: Option<f64>,
    pub timeout_s: Option<f64>,
    pub command: Option<String>,
    /// The file under `$OUT` that holds its log.
    pub log: Option<&'static str>,
    pub reason: Option<String>,
    /// The JSON lines it printed (a line that is not strict JSON stays a string).
    pub figures: Vec<Value>,
    /// The benchmark configuration it measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
    /// The end of its log, when it failed or timed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// A few words for summary.txt.
    #[serde(skip)]
    pub note: String,
}

impl Step {
    pub fn new(step: usize, name: String, phase: &'static str, status: Status) -> Step {
        Step {
            step,
            name,
            phase,
            status,
            exit: None,
            timed_out: false,
            seconds: None,
            timeout_s: None,
            command: None,
            log: None,
            reason: None,
            figures: Vec::new(),
            config: None,
            tests: None,
            log_tail: None,
            note: String::new(),
        }
    }

    /// The last figure that has `key`, as a number.
    pub fn figure(&self, key: &str) -> Option<f64> {
        self.figures.iter().rev().find_map(|f| f.get(key)?.as_f64())
    }
}

/// A phase of the run: its cap, and when it began and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub name: &'static str,
    pub cap_s: f64,
    pub log: &'static str,
    /// Seconds from the start of the run.
    pub start_s: Option<f64>,
    pub seconds: Option<f64>,
}

/// One line of the benchmark table: tiny's and PyTorch's median milliseconds per step for one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct BenchLine {
    pub config: String,
    /// tiny's median (CUDA events per step).
    pub tiny_ms: Option<f64>,
    /// tiny's mean as the host sees it over the queued steps, the measure of PyTorch's `bench()`.
    pub tiny_mean_ms: Option<f64>,
    pub tiny_img_per_s: Option<f64>,
    /// Whether tiny's step passed (a figure from a step that then failed is marked in summary.txt).
    pub tiny_passed: bool,
    pub torch_ms: Option<f64>,
    /// tiny's mean over PyTorch's.
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The per-kernel GPU time of one resnet18 step, on each side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Kernels {
    pub config: Option<String>,
    pub tiny: Vec<KernelRow>,
    pub torch: Vec<KernelRow>,
}

/// summary.json.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: &'static str,
    /// `passed`, `failed`, or `incomplete` (the run is not over, or was interrupted).
    pub verdict: &'static str,
    pub complete: bool,
    pub exit_status: Option<i32>,
    pub not_passed: Vec<String>,
    pub started: String,
    pub updated: String,
    pub seconds: f64,
    pub budget_s: f64,
    pub host: String,
    pub root: String,
    pub out: String,
    pub python: Option<String>,
    /// The bundle's bundle.json (commit, sizes).
    pub bundle: Value,
    pub phases: Vec<PhaseRecord>,
    pub steps: Vec<Step>,
    pub bench: Vec<BenchLine>,
    pub kernels: Kernels,
    /// The command that reruns what did not pass, for a second call.
    pub rerun: Option<String>,
}

impl Summary {
    /// The steps that failed, timed out, were left out or are still running.
    pub fn bad_steps(&self) -> Vec<&Step> {
        self.steps.iter().filter(|s| s.status.is_bad()).collect()
    }

    /// Sets the verdict, the list of steps that did not pass and the time; `over` once the run has ended.
    pub fn refresh(&mut self, seconds: f64, over: Option<(bool, i32)>) {
        self.not_passed = self.bad_steps().iter().map(|s| s.name.clone()).collect();
        self.seconds = seconds;
        self.updated = utc(SystemTime::now());
        (self.complete, self.exit_status) = match over {
            Some((complete, code)) => (complete, Some(code)),
            None => (false, None),
        };
        self.verdict = match (self.complete, self.not_passed.is_empty()) {
            (false, _) => "incomplete",
            (true, true) => "passed",
            (true, false) => "failed",
        };
    }

    /// Writes summary.json into `out` through a temporary file and a rename, so that it is whole at every moment.
    pub fn write(&self, out: &Path) -> std::io::Result<()> {
        let tmp = out.join(".summary.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, out.join("summary.json"))
    }
}

/// `t` as an ISO 8601 UTC time to the second (`2026-12-01T09:30:00Z`).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc(t), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn the_verdict_follows_the_steps_and_the_end() {
        let mut s = Summary {
            format: "f",
            verdict: "",
            complete: false,
            exit_status: None,
            not_passed: vec![],
            started: String::new(),
            updated: String::new(),
            seconds: 0.0,
            budget_s: 1.0,
            host: String::new(),
            root: String::new(),
            out: String::new(),
            python: None,
            bundle: Value::Null,
            phases: vec![],
            steps: vec![
                Step::new(1, "a/b".into(), "a", Status::Passed),
                Step::new(2, "a/c".into(), "a", Status::Skipped),
            ],
            bench: vec![],
            kernels: Kernels::default(),
            rerun: None,
        };
        s.refresh(1.0, None);
        assert_eq!((s.verdict, s.complete), ("incomplete", false));
        s.refresh(1.0, Some((true, 0)));
        assert_eq!((s.verdict, s.exit_status), ("passed", Some(0)));
        s.steps.push(Step::new(3, "b/x".into(), "b", Status::NotRun));
        s.refresh(1.0, Some((true, 1)));
        assert_eq!((s.verdict, s.not_passed.clone()), ("failed", vec!["b/x".to_owned()]));
    }
}

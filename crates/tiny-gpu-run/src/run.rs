//! The run as it goes: its places and clock, the phase under way, and how each step is run, timed and recorded.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::exec::{self, Ended, Running};
use crate::parse::{self, TestCounts};
use crate::plan::{self, Phase};
use crate::summary::{PhaseRecord, Status, Step, Summary};

/// A step's log section in a phase's file keeps its head and tail when it is longer than this.
const LOG_CAP: usize = 1 << 20;

/// How a step's end is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Passes when it exits with 0.
    Plain,
    /// A Rust test binary: also fails when a device test skipped for want of a GPU.
    Test,
    /// An optional tool: exit status 3 means that what it needs is not there (PyTorch, the GPU's counters), a
    /// skip with the last line of its output as the reason.
    Optional,
}

/// A step to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: f64,
    pub kind: Kind,
    /// The benchmark configuration it measures.
    pub config: Option<String>,
    /// Whether it is PyTorch's, which gets the machine's own environment, not the one made for tiny's binaries.
    pub python: bool,
    /// What a failure most likely means, put before the exit status in the reason.
    pub hint: Option<&'static str>,
    /// A text that, found in the log of a failed run, makes it a skip for the reason given: the tool could not
    /// do its work on this machine (ncu without access to the GPU's counters).
    pub skip_if: Option<(&'static str, &'static str)>,
    /// A remark about the step, added to its reason when it does not pass (a benchmark row's note).
    pub remark: Option<String>,
}

impl Spec {
    pub fn new(name: impl Into<String>, argv: Vec<String>, timeout: f64) -> Spec {
        Spec {
            name: name.into(),
            argv,
            timeout,
            kind: Kind::Plain,
            config: None,
            python: false,
            hint: None,
            skip_if: None,
            remark: None,
        }
    }
}

/// The run: where everything is, the clock, and the record.
#[derive(Debug)]
pub struct Run {
    /// The repository the bundle sits in (the binaries' working folder, so commands name `.device-bin/...`).
    pub root: PathBuf,
    pub out: PathBuf,
    /// Scratch space: the steps' own logs, the library links, Python's scripts.
    pub work: PathBuf,
    /// Seconds for the whole run.
    pub budget: f64,
    t0: Instant,
    deadline: Instant,
    phase: &'static Phase,
    phase_deadline: Instant,
    phase_started: Instant,
    /// The environment added for tiny's binaries, and for PyTorch's.
    pub env: Vec<(String, String)>,
    pub python_env: Vec<(String, String)>,
    /// The prefixes of the steps to run (`--only`); empty for all.
    pub only: Vec<String>,
    pub summary: Summary,
}

impl Run {
    pub fn new(root: PathBuf, out: PathBuf, work: PathBuf, budget: f64, summary: Summary) -> Run {
        let t0 = Instant::now();
        Run {
            root,
            out,
            work,
            budget,
            t0,
            deadline: t0 + Duration::from_secs_f64(budget),
            phase: &plan::PHASES[0],
            phase_deadline: t0,
            phase_started: t0,
            env: Vec::new(),
            python_env: Vec::new(),
            only: Vec::new(),
            summary,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Seconds left of the whole budget.
    pub fn left(&self) -> f64 {
        self.deadline.saturating_duration_since(Instant::now()).as_secs_f64()
    }

    /// Seconds left of the phase under way.
    pub fn phase_left(&self) -> f64 {
        self.phase_deadline.saturating_duration_since(Instant::now()).as_secs_f64()
    }

    /// The cap of phase `name` in this run's budget (what is left of the budget for the epoch of training).
    pub fn cap(&self, name: &str) -> f64 {
        plan::cap(plan::phase(name), self.budget).unwrap_or_else(|| self.left())
    }

    /// Starts phase `name`: its clock runs for its cap, or for what is left of the budget when that is less.
    pub fn begin(&mut self, name: &str) {
        self.end_phase();
        let phase = plan::phase(name);
        let now = Instant::now();
        let cap = self.cap(name);
        self.phase = phase;
        self.phase_started = now;
        self.phase_deadline = (now + Duration::from_secs_f64(cap)).min(self.deadline);
        let start_s = self.elapsed();
        self.summary.phases.push(PhaseRecord {
            name: phase.name,
            cap_s: round(cap),
            log: phase.log,
            start_s: Some(round(start_s)),
            seconds: None,
        });
        say(&format!("== {} (cap {:.0}s, {:.0}s of the budget left)", phase.name, cap, self.left()));
        self.save();
    }

    /// Closes the phase under way in the record.
    pub fn end_phase(&mut self) {
        let seconds = round(self.phase_started.elapsed().as_secs_f64());
        if let Some(record) = self.summary.phases.last_mut().filter(|r| r.seconds.is_none()) {
            record.seconds = Some(seconds);
        }
    }

    /// Whether `--only` lets step `name` run (the probe and the gate always run).
    pub fn wanted(&self, name: &str) -> bool {
        self.only.is_empty()
            || ["probe/", "gate/"].iter().any(|p| name.starts_with(p))
            || self.only.iter().any(|o| name.starts_with(o.as_str()))
    }

    /// Rewrites summary.json with the time and verdict so far. A failed write is said, not fatal: the run goes on.
    pub fn save(&mut self) {
        let seconds = round(self.elapsed());
        self.summary.refresh(seconds, None);
        if let Err(e) = self.summary.write(&self.out) {
            say(&format!("warning: could not write summary.json: {e}"));
        }
    }

    /// Adds a step in `status` that runs nothing (a skip, or a step left out), and returns its number.
    pub fn record(&mut self, name: &str, status: Status, reason: &str) -> usize {
        say(&format!("-- {name}: {}, {reason}", status.word()));
        self.add(name, status, reason)
    }

    fn add(&mut self, name: &str, status: Status, reason: &str) -> usize {
        let n = self.summary.steps.len() + 1;
        let mut step = Step::new(n, name.to_owned(), self.phase.name, status);
        step.reason = Some(reason.to_owned()).filter(|r| !r.is_empty());
        step.note = reason.to_owned();
        self.summary.steps.push(step);
        self.save();
        n
    }

    /// Records a step that the runner did itself: its status, log and figures.
    pub fn record_inline(
        &mut self,
        name: &str,
        status: Status,
        seconds: f64,
        log: &str,
        reason: Option<String>,
    ) -> usize {
        let n = self.summary.steps.len() + 1;
        let mut step = Step::new(n, name.to_owned(), self.phase.name, status);
        step.seconds = Some(round(seconds));
        step.log = Some(self.phase.log);
        step.figures = parse::json_lines(log);
        step.note = reason.clone().unwrap_or_default();
        step.reason = reason;
        if status.is_bad() {
            step.log_tail = Some(parse::tail(log, 25, 400));
        }
        self.summary.steps.push(step);
        self.append_log(n, log);
        say(&format!("<< {name}: {} in {seconds:.2}s", status.word()));
        self.save();
        n
    }

    /// Runs `specs` in order, up to `jobs` at a time, each within its own timeout and the phase's time; a spec
    /// that `--only` leaves out is recorded as skipped, and one that finds no time left as not run. Returns the
    /// numbers of their steps, in the order of `specs`.
    pub fn run_all(&mut self, specs: Vec<Spec>, jobs: usize) -> Vec<usize> {
        let mut queue: VecDeque<(usize, Spec)> = VecDeque::new();
        let mut numbers = Vec::new();
        for spec in specs {
            if !self.wanted(&spec.name) {
                numbers.push(self.record(&spec.name, Status::Skipped, "not asked for (--only)"));
                continue;
            }
            let n = self.add(&spec.name, Status::NotRun, "waiting for its turn");
            numbers.push(n);
            queue.push_back((n, spec));
        }
        let mut running: Vec<(usize, Spec, Running)> = Vec::new();
        while !queue.is_empty() || !running.is_empty() {
            while running.len() < jobs.max(1)
                && let Some((n, spec)) = queue.pop_front()
            {
                if let Some(r) = self.start(n, &spec) {
                    running.push((n, spec, r));
                }
            }
            let mut i = 0;
            while i < running.len() {
                match running[i].2.poll() {
                    Some(ended) => {
                        let (n, spec, _) = running.swap_remove(i);
                        self.finish(n, &spec, ended);
                    }
                    None => i += 1,
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        numbers
    }

    /// Starts step `n`, or records why it cannot start (no time left, the run interrupted, a failed spawn).
    fn start(&mut self, n: usize, spec: &Spec) -> Option<Running> {
        let left = self.phase_left();
        let why_not = if let Some(sig) = exec::stopped() {
            Some((Status::NotRun, format!("not run: the run was interrupted (signal {sig})")))
        } else if left < 1.0 {
            let whose = if self.left() < 1.0 { "the run's budget" } else { "its phase's cap" };
            Some((Status::NotRun, format!("not run: {whose} was spent ({:.0}s cap)", self.cap(self.phase.name))))
        } else {
            None
        };
        let timeout = spec.timeout.min(left);
        let log_path = self.step_log(n);
        let command = exec::shell_line(&spec.argv);
        let header = format!("# step: {}\n# command: {command}\n# timeout: {timeout:.0}s\n", spec.name);
        let step = &mut self.summary.steps[n - 1];
        step.command = Some(command.clone());
        step.config = spec.config.clone();
        if let Some((status, reason)) = why_not {
            (step.status, step.reason, step.note) = (status, Some(reason.clone()), reason.clone());
            say(&format!("!! {}: {reason}", spec.name));
            self.save();
            return None;
        }
        (step.status, step.reason, step.note, step.timeout_s) =
            (Status::Running, None, String::new(), Some(round(timeout)));
        step.log = Some(self.phase.log);
        let env = if spec.python { &self.python_env } else { &self.env };
        let started = std::fs::write(&log_path, header)
            .and_then(|()| Running::start(&spec.argv, &self.root, env, &log_path, timeout));
        say(&format!(">> {} (timeout {timeout:.0}s): {command}", spec.name));
        match started {
            Ok(r) => {
                self.save();
                Some(r)
            }
            Err(e) => {
                let ended = Ended { exit: 127, timed_out: false, interrupted: false, seconds: 0.0 };
                let _ = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .and_then(|mut f| writeln!(f, "could not start: {e}"));
                self.finish(n, spec, ended);
                None
            }
        }
    }

    /// Records how step `n` ended: its status, figures and test counts, and its log section.
    fn finish(&mut self, n: usize, spec: &Spec, ended: Ended) {
        let log = std::fs::read(self.step_log(n)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let step = &mut self.summary.steps[n - 1];
        step.exit = Some(ended.exit);
        step.timed_out = ended.timed_out;
        step.seconds = Some(round(ended.seconds));
        step.figures = parse::json_lines(&log);
        let (status, reason) = if ended.interrupted {
            (Status::Interrupted, Some("stopped: the run was interrupted while it ran".to_owned()))
        } else if ended.timed_out {
            (Status::Timeout, Some(format!("timed out after {:.0}s", step.timeout_s.unwrap_or(0.0))))
        } else if ended.exit == 0 {
            (Status::Passed, None)
        } else if spec.kind == Kind::Optional && ended.exit == 3 {
            (Status::Skipped, Some(format!("unavailable: {}", parse::tail(&log, 1, 300))))
        } else if let Some((_, why)) = spec.skip_if.filter(|(marker, _)| log.contains(marker)) {
            (Status::Skipped, Some(why.to_owned()))
        } else {
            let hint = spec.hint.map(|h| format!("{h}: ")).unwrap_or_default();
            (Status::Failed, Some(format!("{hint}exit status {}", ended.exit)))
        };
        let remark = spec.remark.as_ref().filter(|_| status.is_bad());
        (step.status, step.reason) =
            (status, reason.map(|r| r + &remark.map(|m| format!(" ({m})")).unwrap_or_default()));
        if spec.kind == Kind::Test {
            let counts = TestCounts::of(&log);
            step.note = format!("{} passed, {} failed, {} ignored", counts.passed, counts.failed, counts.ignored);
            if step.status == Status::Passed && counts.cuda_skips > 0 {
                step.status = Status::Failed;
                step.reason = Some(format!("{} CUDA tests skipped although TINY_REQUIRE_CUDA=1", counts.cuda_skips));
            }
            step.tests = Some(counts);
        } else if let Some(ms) = step.figure("ms_per_step") {
            step.note = format!("{ms:.2} ms/step, {:.0} img/s", step.figure("img_per_s").unwrap_or(f64::NAN));
        } else if let Some(acc) = step.figure("valid_acc") {
            step.note = format!("valid_acc {acc:.4}, {:.1}s", step.figure("seconds").unwrap_or(f64::NAN));
        }
        if let Some(reason) = &step.reason {
            step.note = if step.note.is_empty() { reason.clone() } else { format!("{reason}; {}", step.note) };
        }
        if step.status.is_bad() {
            step.log_tail = Some(parse::tail(&log, 25, 400));
        }
        let line = format!("<< {}: {} in {:.2}s{}", step.name, step.status.word(), ended.seconds, paren(&step.note));
        let bad = step.status.is_bad();
        say(&line);
        if bad {
            for l in parse::tail(&log, 12, 300).lines() {
                say(&format!("   | {l}"));
            }
        }
        self.append_log(n, &log);
        self.save();
    }

    /// The step's own log, in the scratch folder.
    pub fn step_log(&self, n: usize) -> PathBuf {
        self.work.join("logs").join(format!("{n:03}.log"))
    }

    /// Appends step `n`'s log to its phase's file under `$OUT`, as one section (its head and tail when long).
    pub fn append_log(&self, n: usize, log: &str) {
        let step = &self.summary.steps[n - 1];
        let mut section =
            format!("\n===== {}: {} in {:.2}s =====\n", step.name, step.status.word(), step.seconds.unwrap_or(0.0));
        if log.len() <= LOG_CAP {
            section += log;
        } else {
            let head = floor_char(log, LOG_CAP / 4);
            let tail = floor_char(log, log.len() - LOG_CAP * 3 / 4);
            section += &format!("{}\n[... {} bytes left out ...]\n{}", &log[..head], tail - head, &log[tail..]);
        }
        let path = self.out.join(self.phase_log_of(step));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(section.as_bytes()));
        if let Err(e) = written {
            say(&format!("warning: could not write {}: {e}", path.display()));
        }
    }

    fn phase_log_of(&self, step: &Step) -> &'static str {
        plan::phase(step.phase).log
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, i: usize) -> usize {
    (0..=i.min(s.len())).rev().find(|&j| s.is_char_boundary(j)).unwrap_or(0)
}

/// `x` to two decimals, as summary.json shows seconds.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn paren(note: &str) -> String {
    if note.is_empty() { String::new() } else { format!(" ({note})") }
}

/// Prints a line of the run's progress; a closed output is no reason to stop.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

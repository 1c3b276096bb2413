//! The run's plan: its phases in order of value, each with a cap of its own, and the benchmark rows.

use serde_json::{Value, json};

/// One phase of the run.
#[derive(Debug)]
pub struct Phase {
    pub name: &'static str,
    /// Its cap in seconds at the default budget; other budgets scale it (see [`cap`]).
    pub cap: f64,
    /// The file under `$OUT` that its steps' logs go to.
    pub log: &'static str,
}

/// The default budget of a run: with the machine's start and the transfers, a second call of the same length
/// still fits in a session's 15 minutes of device time.
pub const BUDGET: f64 = 400.0;

/// The phases in order. No phase runs past its cap, so a hanging step delays the next phase by its phase's cap at
/// most: the benchmarks start within 150 s of the start whatever the parity suites do. The caps add up to the
/// default budget; the epoch of training gets what the phases before it left unused.
pub const PHASES: [Phase; 9] = [
    Phase { name: "probe", cap: 15.0, log: "setup.log" },
    Phase { name: "gate", cap: 60.0, log: "setup.log" },
    Phase { name: "parity", cap: 75.0, log: "parity.log" },
    Phase { name: "bench", cap: 80.0, log: "bench.log" },
    Phase { name: "torch", cap: 40.0, log: "bench.log" },
    Phase { name: "tests", cap: 60.0, log: "tests.log" },
    Phase { name: "memcheck", cap: 40.0, log: "tools.log" },
    Phase { name: "profile", cap: 30.0, log: "tools.log" },
    Phase { name: "train", cap: 0.0, log: "train.log" },
];

/// The cap of `phase` under `budget`: its default cap scaled by `budget / BUDGET`, except the gate's, which keeps
/// up to a minute (half the budget at most), as a fresh machine's NVRTC compiles every kernel in it whatever the
/// budget. `None` for the epoch of training, which gets what is left.
pub fn cap(phase: &Phase, budget: f64) -> Option<f64> {
    let scaled = phase.cap * budget / BUDGET;
    match phase.name {
        "train" => None,
        "gate" => Some(scaled.max(phase.cap.min(budget / 2.0))),
        _ => Some(scaled),
    }
}

/// The least time, at the default budget, that the epoch of training needs to be worth starting.
pub const TRAIN_MIN: f64 = 60.0;

/// The phase called `name`.
pub fn phase(name: &str) -> &'static Phase {
    PHASES.iter().find(|p| p.name == name).expect("a phase of PHASES")
}

/// The files the run writes under `$OUT`: the device tool brings back at most eight.
pub fn out_files() -> Vec<&'static str> {
    let mut files = vec!["summary.json", "summary.txt"];
    for p in &PHASES {
        if !files.contains(&p.log) {
            files.push(p.log);
        }
    }
    files
}

/// What PyTorch's `bench()` runs beside a row: nothing, fp32, TF32, or bf16 autocast in channels-last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torch {
    None,
    Fp32,
    Tf32,
    Bf16,
}

/// One benchmark configuration: tiny's `bench_step` with its flags, and PyTorch's counterpart.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub label: String,
    pub model: String,
    pub bs: u32,
    pub size: u32,
    pub steps: u32,
    pub warmup: u32,
    /// Seconds tiny's run may take.
    pub timeout: f64,
    /// bench_step's flags beyond the shape.
    pub flags: Vec<String>,
    pub torch: Torch,
    /// Whether this repeats an earlier row, to show the noise between two runs of one configuration.
    pub again: bool,
    /// A remark for the table (the comment at the end of the row).
    pub note: Option<String>,
}

/// The default table. One row a line: label, model, batch size, image side, timed steps, warm-up steps, seconds
/// tiny's run may take, bench_step's flags (comma-separated, `-` for none) and PyTorch's counterpart (`fp32`,
/// `tf32`, `bf16`: `bench(..., True, amp="bf16", channels_last=True)`, or `-`); a `#` comment after a row is
/// shown beside it. Most telling first, as a slow GPU may leave the last rows out: TF32 and bf16 (what a GPU user
/// runs, bf16 beside PyTorch's autocast in channels-last), their graphs, then fp32, and the first row again, whose
/// difference to the first is the noise.
pub const DEFAULT_ROWS: &str = "
resnet18-bs128-128px-tf32        resnet18   128 128 30 10 40 --tf32                               tf32
resnet18-bs128-128px-bf16        resnet18   128 128 30 10 40 --precision,bf16,--tf32              bf16
resnet18-bs128-128px-tf32-graph  resnet18   128 128 30 10 40 --cuda-graph,--tf32                  -
resnet18-bs128-128px-bf16-graph  resnet18   128 128 30 10 40 --precision,bf16,--tf32,--cuda-graph -
simple_cnn-bs128-64px-tf32       simple_cnn 128 64  50 10 20 --tf32                               tf32
simple_cnn-bs128-64px-bf16       simple_cnn 128 64  50 10 20 --precision,bf16,--tf32              bf16
simple_cnn-bs128-64px-tf32-graph simple_cnn 128 64  50 10 20 --cuda-graph,--tf32                  -
simple_cnn-bs128-64px-bf16-graph simple_cnn 128 64  50 10 20 --precision,bf16,--tf32,--cuda-graph -
resnet18-bs128-128px-fp32        resnet18   128 128 30 10 40 -                                    fp32
simple_cnn-bs128-64px-fp32       simple_cnn 128 64  50 10 20 -                                    fp32
resnet18-bs128-128px-fp32-graph  resnet18   128 128 30 10 40 --cuda-graph                         -
simple_cnn-bs128-64px-fp32-graph simple_cnn 128 64  50 10 20 --cuda-graph                         -
resnet18-bs128-128px-tf32        resnet18   128 128 30 10 40 --tf32                               tf32
";

/// Reads a table in [`DEFAULT_ROWS`]'s format; a label seen before marks its row as the repeat of that row.
pub fn parse_rows(text: &str) -> Result<Vec<BenchRow>, String> {
    let mut rows: Vec<BenchRow> = Vec::new();
    for line in text.lines() {
        let (line, note) = match line.split_once('#') {
            Some((row, note)) => (row, Some(note.trim().to_owned()).filter(|n| !n.is_empty())),
            None => (line, None),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("benchmark row {line:?}: {what}");
        let [label, model, bs, size, steps, warmup, timeout, flags, torch] = words[..] else {
            return Err(bad("expected 9 words: label model bs size steps warmup timeout flags torch"));
        };
        let num = |w: &str, what: &str| w.parse::<u32>().map_err(|_| bad(&format!("{what} {w:?} is not a number")));
        let torch = match torch {
            "-" => Torch::None,
            "fp32" => Torch::Fp32,
            "tf32" => Torch::Tf32,
            "bf16" => Torch::Bf16,
            other => return Err(bad(&format!("PyTorch's side {other:?} is not one of -, fp32, tf32, bf16"))),
        };
        rows.push(BenchRow {
            label: label.to_owned(),
            model: model.to_owned(),
            bs: num(bs, "the batch size")?,
            size: num(size, "the image side")?,
            steps: num(steps, "the steps")?,
            warmup: num(warmup, "the warm-up steps")?,
            timeout: f64::from(num(timeout, "the timeout")?),
            flags: if flags == "-" { Vec::new() } else { flags.split(',').map(String::from).collect() },
            torch,
            again: rows.iter().any(|r| r.label == label),
            note,
        });
    }
    Ok(rows)
}

impl BenchRow {
    /// The step's name: `bench/<label>`, with `-again` for a repeat.
    pub fn name(&self) -> String {
        format!("bench/{}{}", self.label, if self.again { "-again" } else { "" })
    }

    /// tiny's command line, with `bench_step` at `exe`.
    pub fn tiny_argv(&self, exe: &str) -> Vec<String> {
        let mut argv: Vec<String> =
            vec![exe.into(), "--device".into(), "cuda".into(), "--model".into(), self.model.clone()];
        for (flag, n) in [("--bs", self.bs), ("--size", self.size), ("--steps", self.steps), ("--warmup", self.warmup)]
        {
            argv.extend([flag.to_owned(), n.to_string()]);
        }
        argv.extend(self.flags.iter().cloned());
        argv
    }

    /// PyTorch's arguments for torch_rows.py, or `None` where PyTorch has no counterpart (or this is a repeat).
    pub fn torch_args(&self) -> Option<Value> {
        let (tf32, amp, channels_last) = match self.torch {
            Torch::None => return None,
            Torch::Fp32 => (false, None, false),
            Torch::Tf32 => (true, None, false),
            Torch::Bf16 => (true, Some("bf16"), true),
        };
        (!self.again).then(|| {
            json!({
                "config": self.label, "model": self.model, "bs": self.bs, "size": self.size, "steps": self.steps,
                "warmup": self.warmup, "tf32": tf32, "amp": amp, "channels_last": channels_last,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_add_up_to_the_budget_and_the_run_writes_at_most_eight_files() {
        assert_eq!(PHASES.iter().map(|p| p.cap).sum::<f64>(), BUDGET);
        let files = out_files();
        assert!(files.len() <= 8, "{files:?}");
        // The benchmarks start within 150 s, whatever the steps before them do.
        let before: f64 = PHASES.iter().take_while(|p| p.name != "bench").map(|p| p.cap).sum();
        assert!(before <= 150.0);
        assert_eq!(cap(phase("parity"), 200.0), Some(37.5));
        assert_eq!((cap(phase("gate"), 200.0), cap(phase("gate"), 40.0)), (Some(60.0), Some(20.0)));
        assert_eq!(cap(phase("train"), 400.0), None);
    }

    #[test]
    fn the_default_rows_parse_with_one_repeat_and_their_torch_arguments() {
        let rows = parse_rows(DEFAULT_ROWS).unwrap();
        assert_eq!(rows.len(), 13);
        assert_eq!(rows.iter().filter(|r| r.again).count(), 1);
        assert_eq!(rows[12].name(), "bench/resnet18-bs128-128px-tf32-again");
        assert_eq!(rows[12].torch_args(), None);
        let names: std::collections::HashSet<String> = rows.iter().map(BenchRow::name).collect();
        assert_eq!(names.len(), rows.len());
        assert_eq!(
            rows[0].tiny_argv("b").join(" "),
            "b --device cuda --model resnet18 --bs 128 --size 128 --steps 30 --warmup 10 --tf32"
        );
        let bf16 = rows.iter().find(|r| r.label == "resnet18-bs128-128px-bf16").unwrap();
        assert_eq!(bf16.torch_args().unwrap()["amp"], "bf16");
        assert_eq!(bf16.torch_args().unwrap()["channels_last"], true);
        assert_eq!(rows[8].torch_args().unwrap()["tf32"], false);
        assert!(parse_rows("a simple_cnn 8 32 2 1 5 - nope").is_err());
        assert!(parse_rows("a simple_cnn x 32 2 1 5 - -").is_err());
    }
}

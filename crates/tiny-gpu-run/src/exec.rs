//! A step's process: started in a process group of its own, its output in a log file, stopped whole.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

/// The signal that stopped the run (SIGINT or SIGTERM), or 0 while none has come.
pub static STOP: AtomicI32 = AtomicI32::new(0);

/// How long a process is given between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Takes SIGINT and SIGTERM from here on: a thread waits for them and sets [`STOP`], which the run checks while
/// it waits for its steps. Must be called before any other thread starts, as threads inherit the blocked set
/// (the processes started later do not: the standard library clears the mask in each child).
pub fn catch_signals() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            STOP.store(sig as i32, Ordering::SeqCst);
        }
    });
    Ok(())
}

/// The signal that stopped the run, if one has come.
pub fn stopped() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    /// Its exit status, or 128 + the signal that killed it.
    pub exit: i32,
    /// Whether it was stopped for running past its time.
    pub timed_out: bool,
    /// Whether it was stopped because the run was interrupted.
    pub interrupted: bool,
    pub seconds: f64,
}

/// A process started by [`Running::start`], with its deadline.
#[derive(Debug)]
pub struct Running {
    child: Child,
    started: Instant,
    deadline: Instant,
    /// When SIGTERM was sent, and why: the deadline (true) or an interruption (false).
    stopping: Option<(Instant, bool)>,
}

impl Running {
    /// Starts `argv` in `dir` with `env` added, its output (stdout and stderr) appended to `log`, no input, and
    /// `timeout` to run.
    pub fn start(
        argv: &[String],
        dir: &Path,
        env: &[(String, String)],
        log: &Path,
        timeout: f64,
    ) -> std::io::Result<Self> {
        let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::other("an empty command"))?;
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        // A relative path with a folder in it is the repository's (`.device-bin/bench_step`): made absolute here, as
        // the standard library leaves open whether it would be taken from `dir` or from the runner's own folder.
        let program = if program.contains('/') { dir.join(program) } else { program.into() };
        let mut command = Command::new(program);
        command.args(args).current_dir(dir).envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        let child = spawn(command.stdout(out).stderr(err).process_group(0))?;
        let started = Instant::now();
        Ok(Running { child, started, deadline: started + Duration::from_secs_f64(timeout.max(0.0)), stopping: None })
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Checks on the process without blocking: its end once it has ended (the rest of its group is killed then,
    /// so that nothing it started outlives it), else `None`. Past its deadline, or once the run is interrupted,
    /// its group gets SIGTERM, and SIGKILL [`GRACE`] later.
    pub fn poll(&mut self) -> Option<Ended> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let _ = signal::killpg(self.group(), Signal::SIGKILL);
            let exit = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            let (timed_out, interrupted) = match self.stopping {
                Some((_, deadline)) => (deadline, !deadline),
                None => (false, false),
            };
            return Some(Ended { exit, timed_out, interrupted, seconds: self.started.elapsed().as_secs_f64() });
        }
        let now = Instant::now();
        match self.stopping {
            None if stopped().is_some() || now >= self.deadline => {
                let _ = signal::killpg(self.group(), Signal::SIGTERM);
                self.stopping = Some((now, stopped().is_none()));
            }
            Some((at, _)) if now >= at + GRACE => {
                let _ = signal::killpg(self.group(), Signal::SIGKILL);
            }
            _ => {}
        }
        None
    }

    /// Waits for the end of the process, checking every few milliseconds.
    pub fn wait(mut self) -> Ended {
        loop {
            if let Some(ended) = self.poll() {
                return ended;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `command`, again a few times while the file is busy: a program written just before (a script copied
/// into place) cannot be executed while another process, forked meanwhile, still holds it open for writing.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            started => return started,
        }
    }
}

/// `argv` as a shell would take it: each word quoted where it needs to be.
pub fn shell_line(argv: &[String]) -> String {
    let quote = |w: &String| {
        let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain { w.clone() } else { format!("'{}'", w.replace('\'', "'\\''")) }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_where_a_shell_needs_it() {
        let argv: Vec<String> = ["a/b", "--x=1", "two words", "it's", ""].map(String::from).into();
        assert_eq!(shell_line(&argv), r#"a/b --x=1 'two words' 'it'\''s' ''"#);
    }

    #[test]
    fn a_process_past_its_time_is_stopped_with_everything_it_started() {
        let dir = std::env::temp_dir().join(format!("gpu-run-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let pid_file = dir.join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let argv: Vec<String> = ["sh", "-c", &script].map(String::from).into();
        let ended = Running::start(&argv, &dir, &[], &log, 0.5).unwrap().wait();
        assert!(ended.timed_out && !ended.interrupted, "{ended:?}");
        assert!(ended.seconds < 5.0, "{ended:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // The background sleep was in the group: it is gone, or a zombie waiting for its new parent.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z"), "{state}");
        let argv: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 3"].map(String::from).into();
        let ended = Running::start(&argv, &dir, &[], &log, 10.0).unwrap().wait();
        assert_eq!((ended.exit, ended.timed_out), (3, false));
        assert!(std::fs::read_to_string(&log).unwrap().contains("out\nerr\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

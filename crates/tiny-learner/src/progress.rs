//! Progress lines on standard output that never stop a fit: a closed pipe or a full disk is said once on stderr.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output has failed; later progress lines are dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints `line` on standard output, as `println!` does, except that a failed write (`train ... | head -1`, or
/// `> /dev/full`) does not panic: it is said once on standard error and later lines are dropped, so the fit goes
/// on and its checkpoints and exports are written.
pub fn print_progress(line: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        && !CLOSED.swap(true, Ordering::Relaxed)
    {
        eprintln!("tiny: cannot write the progress to standard output ({e}); the fit goes on without it");
    }
}

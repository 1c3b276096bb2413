//! The train example's own callbacks: ending after N epochs, and Ctrl-C that ends the fit after its batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tiny_learner::{Callback, Cancel, CbResult, LearnerState};

/// Cancels the fit once `0` epochs are done, after the checkpoint of the last one is written.
pub struct StopAfter(pub usize);

impl Callback for StopAfter {
    fn order(&self) -> i32 {
        100
    }

    fn after_epoch(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.epoch + 1 >= self.0 { Err(Cancel::Fit.into()) } else { Ok(()) }
    }
}

/// Where the fit was when Ctrl-C stopped it: the epoch, whether it was training, the batch and the batch count.
pub type StoppedAt = (usize, bool, usize, usize);

/// Ends the fit at the end of the batch during which Ctrl-C was pressed, and records where that was.
pub struct Interrupt {
    pressed: Arc<AtomicBool>,
    /// Where the fit stopped, once it did.
    pub at: Option<StoppedAt>,
}

impl Interrupt {
    /// Catches Ctrl-C from now on: the first press asks the fit to stop after its batch, a second exits at once.
    /// SIGTERM and SIGHUP (a scheduler's stop, a closed terminal) come here too, through ctrlc's `termination`.
    pub fn install() -> anyhow::Result<Interrupt> {
        let pressed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&pressed);
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::Relaxed) {
                eprintln!("\ninterrupted again: exiting now");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: stopping at the end of this batch (Ctrl-C again exits at once)");
        })
        .context("could not install the Ctrl-C handler")?;
        Ok(Interrupt { pressed, at: None })
    }
}

impl Callback for Interrupt {
    fn order(&self) -> i32 {
        // Before the other callbacks' after_batch, so that none of them records a batch of a fit being stopped.
        -100
    }

    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !self.pressed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.at = Some((learn.epoch, learn.training, learn.iter, learn.n_iter));
        Err(Cancel::Fit.into())
    }
}

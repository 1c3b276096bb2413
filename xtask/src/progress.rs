//! Progress reports: an indicatif bar on a terminal, plain lines otherwise, or nothing at all in tests.

use std::fmt::Display;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar with bytes, rate and time left, for a terminal.
    Bar,
    /// A plain line every few seconds, for logs and pipes.
    Lines,
    /// Nothing at all, for tests.
    Silent,
}

impl Style {
    /// Chooses a bar when standard error is a terminal and plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() { Style::Bar } else { Style::Lines }
    }
}

/// Prints status messages and creates transfer reports in the chosen style; everything goes to standard error.
#[derive(Clone, Copy, Debug)]
pub struct Reporter {
    style: Style,
}

impl Reporter {
    /// Creates a reporter that uses `style`.
    pub fn new(style: Style) -> Self {
        Reporter { style }
    }

    /// Prints one status line unless the reporter is silent.
    pub fn say(&self, message: impl Display) {
        if self.style != Style::Silent {
            eprintln!("{message}");
        }
    }

    /// Starts a report for a transfer of `total` bytes (when known) that begins at byte `start`.
    pub fn transfer(&self, total: Option<u64>, start: u64) -> Transfer {
        match self.style {
            Style::Bar => Transfer::Bar(new_bar(total, start)),
            Style::Lines => Transfer::Lines(Lines::new(total, start)),
            Style::Silent => Transfer::Silent,
        }
    }
}

fn new_bar(total: Option<u64>, start: u64) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (ProgressBar::new(total), "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec}, {eta} left"),
        None => (ProgressBar::no_length(), "{spinner} {bytes} {bytes_per_sec}"),
    };
    // The templates are constants, so a template error is a bug that the default style papers over.
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(start);
    bar.reset_eta();
    bar
}

/// A transfer report in progress.
#[derive(Debug)]
pub enum Transfer {
    /// A live indicatif bar.
    Bar(ProgressBar),
    /// Plain lines printed now and then.
    Lines(Lines),
    /// No output.
    Silent,
}

impl Transfer {
    /// Records that `position` bytes of the file are now on disk.
    pub fn set(&mut self, position: u64) {
        match self {
            Transfer::Bar(bar) => bar.set_position(position),
            Transfer::Lines(lines) => lines.set(position),
            Transfer::Silent => {}
        }
    }

    /// Ends the report, leaving no bar behind on the terminal.
    pub fn finish(self) {
        match self {
            Transfer::Bar(bar) => bar.finish_and_clear(),
            Transfer::Lines(lines) => lines.print(),
            Transfer::Silent => {}
        }
    }
}

/// State of a plain-line report: one line at most every [`Lines::EVERY`].
#[derive(Debug)]
pub struct Lines {
    total: Option<u64>,
    start: u64,
    position: u64,
    began: Instant,
    printed: Instant,
}

impl Lines {
    /// The shortest time between two lines.
    pub const EVERY: Duration = Duration::from_secs(5);

    fn new(total: Option<u64>, start: u64) -> Self {
        let now = Instant::now();
        Lines { total, start, position: start, began: now, printed: now }
    }

    fn set(&mut self, position: u64) {
        self.position = position;
        if self.printed.elapsed() >= Self::EVERY {
            self.printed = Instant::now();
            self.print();
        }
    }

    fn print(&self) {
        eprintln!("{}", line(self.total, self.start, self.position, self.began.elapsed()));
    }
}

/// Formats one progress line, such as `42.0 MiB of 94.4 MiB (44%), 8.1 MiB/s, about 6 s left`.
pub fn line(total: Option<u64>, start: u64, position: u64, elapsed: Duration) -> String {
    let rate = (position - start.min(position)) as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut text = format!("  {}", mib(position));
    if let Some(total) = total {
        let percent = if total == 0 { 100.0 } else { 100.0 * position as f64 / total as f64 };
        text += &format!(" of {} ({percent:.0}%)", mib(total));
    }
    text += &format!(", {}/s", mib(rate as u64));
    match total {
        Some(total) if rate > 0.0 => {
            let left = total.saturating_sub(position) as f64 / rate;
            text += &format!(", about {left:.0} s left");
        }
        _ => {}
    }
    text
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_names_bytes_rate_and_time_left() {
        let mib = 1024 * 1024;
        let text = line(Some(100 * mib), 0, 25 * mib, Duration::from_secs(5));
        assert_eq!(text, "  25.0 MiB of 100.0 MiB (25%), 5.0 MiB/s, about 15 s left");
    }
}

//! Progress reporting on stderr: a redrawn bar on a terminal, a plain status line every few
//! seconds otherwise (logs and Ansible output stay readable), nothing when quiet.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    prog: &'static str,
    label: String,
    total: u64,
    tty: bool,
    quiet: bool,
    start: Instant,
    last: Option<Instant>,
    every: Duration,
}

impl Progress {
    pub fn new(prog: &'static str, label: impl Into<String>, total: u64, quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress {
            prog,
            label: label.into(),
            total,
            tty,
            quiet,
            start: Instant::now(),
            last: None,
            every: if tty { Duration::from_millis(100) } else { Duration::from_secs(5) },
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Reports `done` of the total, plus an optional extra text (peers, rates).
    pub fn update(&mut self, done: u64, extra: &str) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        // The first non-TTY line waits a full period: short jobs print nothing.
        let due = match self.last {
            None => !self.tty && now.duration_since(self.start) < self.every,
            Some(t) => now.duration_since(t) < self.every,
        };
        if due {
            return;
        }
        self.last = Some(now);
        self.draw(done, extra);
    }

    fn draw(&self, done: u64, extra: &str) {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / elapsed;
        let pct = if self.total == 0 { 100.0 } else { done as f64 * 100.0 / self.total as f64 };
        let eta = if rate > 0.0 && done < self.total {
            format!("{:.0}s", (self.total - done) as f64 / rate)
        } else {
            "-".into()
        };
        let rate_s = format!("{}/s", crate::units::human_bytes(rate as u64));
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 30usize;
            let filled = ((pct / 100.0) * width as f64) as usize;
            let bar: String = "#".repeat(filled.min(width)) + &"-".repeat(width - filled.min(width));
            let _ = write!(err, "\r\x1b[2K{} [{bar}] {pct:5.1}% {rate_s} eta {eta} {extra}", self.label);
        } else {
            let _ = writeln!(err, "{}: {} {pct:.1}% {rate_s} eta {eta} {extra}", self.prog, self.label);
        }
        let _ = err.flush();
    }

    /// Ends the bar (clears the line on a terminal).
    pub fn finish(&mut self) {
        if self.tty && !self.quiet && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

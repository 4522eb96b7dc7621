//! Progress bars on stderr for the command-line tools and the lab: redrawn in place on a
//! terminal, one line per 10 % otherwise (so logs and CI output stay readable).

use std::io::{IsTerminal, Write};
use std::time::Instant;

const WIDTH: usize = 30;

/// One bar for one operation.
#[derive(Debug)]
pub struct Bar {
    label: String,
    started: Instant,
    tty: bool,
    last_decile: Option<u64>,
    last_draw: Option<Instant>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

impl Bar {
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_decile: None,
            last_draw: None,
        }
    }

    /// Shows `done` of `total` bytes.
    pub fn update(&mut self, done: u64, total: u64) {
        let fraction = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        };
        let rate = mib(done) / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "  {:<10} [{:<WIDTH$}] {:>3.0}%  {:>7.1}/{:.1} MiB  {:>7.1} MiB/s",
            self.label,
            "#".repeat((fraction * WIDTH as f64) as usize),
            fraction * 100.0,
            mib(done),
            mib(total),
            rate
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            // Redraw at most 20 times a second.
            if self
                .last_draw
                .is_some_and(|t| t.elapsed().as_millis() < 50 && done < total)
            {
                return;
            }
            self.last_draw = Some(Instant::now());
            let _ = write!(err, "\r{line}");
        } else {
            let decile = (fraction * 10.0) as u64;
            if self.last_decile != Some(decile) {
                self.last_decile = Some(decile);
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.tty && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

//! `restore`'s progress: a bar on a terminal (bytes and files, rate, ETA; `indicatif`), plain
//! `restore progress` log lines when stderr is not a terminal, nothing with `-json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;

use crate::restore::RestoreProgress;

/// The bar: bytes with rate and ETA, files in the message.
const BAR_TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}";
/// Without a terminal a line is logged for the first file, then at most this often, and for
/// the last one: enough to see a long restore move without flooding a log collector.
const LINE_INTERVAL: Duration = Duration::from_secs(5);
/// The bar is redrawn at most this often (indicatif's default rate, named).
const BAR_REFRESH_HZ: u8 = 20;

/// How far a restore got, for the plain lines.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub files: usize,
    pub total_files: usize,
    pub bytes: u64,
    pub total_bytes: u64,
}

/// `1.5 MiB` style sizes (binary units, one decimal from KiB on).
fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The plain progress line: files, bytes, rate and ETA after `elapsed`.
pub fn line(c: Counts, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        c.bytes as f64 / secs
    } else {
        0.0
    };
    let left = c.total_bytes.saturating_sub(c.bytes);
    let eta = if left == 0 {
        "0s".to_string()
    } else if rate > 0.0 {
        format!("{}s", (left as f64 / rate).ceil() as u64)
    } else {
        "unknown".to_string()
    };
    format!(
        "files {}/{}, {} of {} ({}/s), ETA {eta}",
        c.files,
        c.total_files,
        size(c.bytes),
        size(c.total_bytes),
        size(rate as u64)
    )
}

/// How `restore` reports progress.
pub enum Meter {
    Bar(ProgressBar, Mutex<Counts>),
    Lines {
        counts: Mutex<Counts>,
        started: Instant,
        last: Mutex<Option<Instant>>,
    },
    Quiet,
}

impl Meter {
    /// The meter for this run: quiet with `-json`, a bar when stderr is a terminal.
    pub fn for_run(json: bool) -> Meter {
        if json {
            Meter::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::stderr_with_hz(BAR_REFRESH_HZ),
            );
            bar.set_style(style());
            Meter::Bar(bar, Mutex::new(Counts::default()))
        } else {
            Meter::Lines {
                counts: Mutex::new(Counts::default()),
                started: Instant::now(),
                last: Mutex::new(None),
            }
        }
    }

    /// Removes the bar (before the result is printed).
    pub fn finish(&self) {
        if let Meter::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl RestoreProgress for Meter {
    fn start(&self, files: usize, bytes: u64) {
        match self {
            Meter::Bar(bar, counts) => {
                *counts.lock() = Counts {
                    total_files: files,
                    total_bytes: bytes,
                    ..Counts::default()
                };
                bar.set_length(bytes);
                bar.set_message(format!("files 0/{files}"));
            }
            Meter::Lines { counts, .. } => {
                *counts.lock() = Counts {
                    total_files: files,
                    total_bytes: bytes,
                    ..Counts::default()
                };
            }
            Meter::Quiet => {}
        }
    }

    fn file_done(&self, bytes: u64) {
        match self {
            Meter::Bar(bar, counts) => {
                let mut c = counts.lock();
                c.files += 1;
                c.bytes += bytes;
                bar.set_message(format!("files {}/{}", c.files, c.total_files));
                bar.inc(bytes);
                if c.files == c.total_files {
                    // Cleared before the restore's own log lines and the result are written.
                    bar.finish_and_clear();
                }
            }
            Meter::Lines {
                counts,
                started,
                last,
            } => {
                let mut c = counts.lock();
                c.files += 1;
                c.bytes += bytes;
                let now = Instant::now();
                let mut last = last.lock();
                let due = last.is_none_or(|t| now.duration_since(t) >= LINE_INTERVAL)
                    || c.files == c.total_files;
                if due {
                    *last = Some(now);
                    tracing::info!(progress = %line(*c, now.duration_since(*started)), "restore progress");
                }
            }
            Meter::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_shows_files_bytes_rate_and_eta() {
        let c = Counts {
            files: 3,
            total_files: 12,
            bytes: 3 * 1024 * 1024,
            total_bytes: 12 * 1024 * 1024,
        };
        assert_eq!(
            line(c, Duration::from_secs(2)),
            "files 3/12, 3.0 MiB of 12.0 MiB (1.5 MiB/s), ETA 6s"
        );
        let done = Counts {
            files: 12,
            bytes: 12 * 1024 * 1024,
            ..c
        };
        assert!(line(done, Duration::from_secs(8)).ends_with("ETA 0s"));
        let stalled = Counts { bytes: 0, ..c };
        assert!(line(stalled, Duration::ZERO).ends_with("ETA unknown"));
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn the_bar_template_renders_bytes_rate_eta_and_files() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        for key in [
            "{bytes}",
            "{total_bytes}",
            "{bytes_per_sec}",
            "{eta}",
            "{msg}",
        ] {
            assert!(BAR_TEMPLATE.contains(key), "{key}");
        }
        let meter = Meter::Bar(
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
            Mutex::new(Counts::default()),
        );
        meter.start(2, 300);
        meter.file_done(100);
        let Meter::Bar(bar, counts) = &meter else {
            unreachable!()
        };
        assert_eq!(bar.position(), 100);
        assert_eq!(bar.length(), Some(300));
        assert_eq!(bar.message(), "files 1/2");
        assert_eq!(counts.lock().files, 1);
        assert!(!bar.is_finished());
        meter.file_done(200);
        assert!(bar.is_finished(), "cleared after the last file");
        meter.finish();
    }

    #[test]
    fn json_runs_are_quiet() {
        assert!(matches!(Meter::for_run(true), Meter::Quiet));
    }
}

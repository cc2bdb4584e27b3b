//! Process-wide `tracing` output to stderr (or `$LITESTREAM_LOG_FILE`), configured by `logging:` in `litestream.yml`
//! (`level`, `type: text|json`) and the `LOG_LEVEL` environment variable, which wins.
//!
//! Installing is idempotent and never panics: when the host process (or an earlier call)
//! already set a global subscriber, ours is simply not installed.
use std::io::{IsTerminal, Write};
use std::sync::Once;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{normalize_level, LogFormat, LoggingConfig};

static INIT: Once = Once::new();

/// Installs the stderr subscriber described by `cfg` (once per process; later calls do
/// nothing). `LOG_LEVEL` overrides `cfg.level`.
pub fn init(cfg: &LoggingConfig) {
    let env = std::env::var("LOG_LEVEL").ok();
    let level = effective_level(cfg, env.as_deref());
    let format = cfg.format;
    INIT.call_once(|| install(level, format));
}

/// [`init`] for processes without a config file: text format, level from `LOG_LEVEL`
/// (default info).
pub fn init_from_env() {
    init(&LoggingConfig::default());
}

/// The level to log at: `LOG_LEVEL` when set and not empty (an unknown name means info, as
/// in Litestream), else `cfg.level`, else info. Names are case-insensitive.
pub fn effective_level(cfg: &LoggingConfig, env: Option<&str>) -> LevelFilter {
    let name = match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => normalize_level(v),
        None => cfg.level.as_deref().and_then(normalize_level),
    };
    match name {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("warn") => LevelFilter::WARN,
        Some("error") => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

/// Levels of events from other crates: at most `warn`. The AWS SDK's debug events dump its
/// configuration, including the access key id; hyper and rustls are noise at debug.
fn targets(level: LevelFilter) -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("litestream", level)
        .with_default(level.min(LevelFilter::WARN))
}

/// Environment variable naming a file that receives the log lines instead of stderr (appended).
/// For hosts whose stderr is part of their behaviour, such as SQLite's test suite, where a
/// child process writing to stderr fails the parent's `exec`.
pub const LOG_FILE_ENV: &str = "LITESTREAM_LOG_FILE";

/// The log file shared by many processes: each line is prefixed with the process id and
/// written with one `write` (the file is opened for appending, so lines do not interleave).
struct PidLines(std::fs::File);

struct PidLine<'a> {
    file: &'a std::fs::File,
    buf: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for PidLines {
    type Writer = PidLine<'a>;
    fn make_writer(&'a self) -> PidLine<'a> {
        PidLine {
            file: &self.0,
            buf: format!("pid={} ", std::process::id()).into_bytes(),
        }
    }
}

impl std::io::Write for PidLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PidLine<'_> {
    fn drop(&mut self) {
        // Logging must never fail the host: a failed write loses the line.
        let _ = (&*self.file).write_all(&self.buf);
    }
}

fn install(level: LevelFilter, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let file = std::env::var_os(LOG_FILE_ENV)
        .filter(|v| !v.is_empty())
        .and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
    let ansi = file.is_none() && std::io::stderr().is_terminal();
    let writer = match file {
        Some(f) => BoxMakeWriter::new(PidLines(f)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(level);
    // An error means a global subscriber exists already: keep it.
    let _ = match format {
        LogFormat::Json => builder.json().finish().with(targets(level)).try_init(),
        LogFormat::Text => builder
            .with_ansi(ansi)
            .finish()
            .with(targets(level))
            .try_init(),
    };
}

/// Rate limit for an error that repeats at every commit (a full meta disk): the first
/// occurrence is logged, then at most one per `interval`, each logged line carrying how many
/// were not logged since the previous one.
#[derive(Debug)]
pub(crate) struct RepeatLimiter {
    interval: std::time::Duration,
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl RepeatLimiter {
    pub(crate) const fn new(interval: std::time::Duration) -> Self {
        RepeatLimiter {
            interval,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// One occurrence at `now`: `Some(n)` when it is to be logged, `n` being how many
    /// occurrences were suppressed before it; `None` when it is to be suppressed (counted).
    pub(crate) fn occurred(&mut self, now: std::time::Instant) -> Option<u64> {
        let due = self
            .last_logged
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(level: Option<&str>) -> LoggingConfig {
        LoggingConfig {
            level: level.map(String::from),
            ..LoggingConfig::default()
        }
    }

    #[test]
    fn other_crates_are_capped_at_warn() {
        let t = targets(LevelFilter::DEBUG);
        assert!(t.would_enable("litestream::uploader", &tracing::Level::DEBUG));
        assert!(!t.would_enable("aws_smithy_runtime::client", &tracing::Level::DEBUG));
        assert!(!t.would_enable("aws_sdk_s3", &tracing::Level::INFO));
        assert!(t.would_enable("aws_sdk_s3", &tracing::Level::WARN));
        let t = targets(LevelFilter::ERROR);
        assert!(!t.would_enable("aws_sdk_s3", &tracing::Level::WARN));
    }

    #[test]
    fn level_table() {
        let cases: &[(Option<&str>, Option<&str>, LevelFilter)] = &[
            (None, None, LevelFilter::INFO),
            (Some("debug"), None, LevelFilter::DEBUG),
            (Some("warn"), None, LevelFilter::WARN),
            (Some("error"), None, LevelFilter::ERROR),
            (Some("trace"), None, LevelFilter::TRACE),
            (Some("debug"), Some("ERROR"), LevelFilter::ERROR),
            (Some("error"), Some("Debug"), LevelFilter::DEBUG),
            (None, Some("WARNING"), LevelFilter::WARN),
            (Some("debug"), Some(""), LevelFilter::DEBUG),
            (Some("debug"), Some("loud"), LevelFilter::INFO),
            (Some("nonsense"), None, LevelFilter::INFO),
        ];
        for (conf, env, want) in cases {
            assert_eq!(
                effective_level(&cfg(*conf), *env),
                *want,
                "{conf:?} {env:?}"
            );
        }
    }

    #[test]
    fn log_file_lines_carry_the_pid() {
        use tracing_subscriber::fmt::MakeWriter;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        let w = PidLines(open());
        writeln!(w.make_writer(), "one").unwrap();
        writeln!(PidLines(open()).make_writer(), "two").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let pid = std::process::id();
        assert_eq!(text, format!("pid={pid} one\npid={pid} two\n"));
    }

    #[test]
    fn init_is_idempotent_and_tolerates_existing_subscriber() {
        // Another subscriber may already be global (set by a test or the host): no panic.
        let _ =
            tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
        init(&LoggingConfig {
            level: Some("debug".into()),
            format: LogFormat::Json,
            stderr: true,
        });
        init_from_env();
        init(&LoggingConfig::default());
        assert!(INIT.is_completed());
        tracing::info!("still works");
    }

    #[test]
    fn repeats_are_logged_once_per_interval_with_the_suppressed_count() {
        use std::time::{Duration, Instant};
        let every = Duration::from_secs(60);
        let mut l = RepeatLimiter::new(every);
        let t0 = Instant::now();
        assert_eq!(l.occurred(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(l.occurred(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(l.occurred(t0 + every), Some(5));
        assert_eq!(l.occurred(t0 + every + Duration::from_secs(59)), None);
        assert_eq!(l.occurred(t0 + every * 2), Some(1));
        // A pause longer than the interval: the next one is logged at once.
        assert_eq!(l.occurred(t0 + every * 10), Some(0));
    }
}

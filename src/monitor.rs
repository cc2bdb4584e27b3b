//! `lag-alert`: a background thread (`litestream-monitor`, started only when some database has a
//! `lag-alert`) compares each database's lag with its threshold and logs a rate-limited warning
//! while it is exceeded, and one line when it is back under. The status shows the same
//! comparison at read time (`lag_alert_exceeded`), whether or not this thread runs.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often lags are compared with their alerts: thresholds are seconds or more, and a check
/// costs one short lock per database.
const LAG_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// While a lag stays above its alert, the warning repeats at most this often: visible in a
/// log tail without flooding it.
const LAG_ALERT_REPEAT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The lag went above the alert (or is still above and the repeat interval passed).
    Exceeded,
    /// The lag is back at or below the alert.
    Recovered,
}

/// The alert state of one database.
#[derive(Debug, Default)]
pub struct Alert {
    last_warned: Option<Instant>,
}

impl Alert {
    /// What to log for `lag` against `threshold` at `now`, if anything.
    pub fn observe(&mut self, now: Instant, lag: f64, threshold: f64) -> Option<Event> {
        if lag > threshold {
            let due = self
                .last_warned
                .is_none_or(|t| now.duration_since(t) >= LAG_ALERT_REPEAT);
            if due {
                self.last_warned = Some(now);
                return Some(Event::Exceeded);
            }
            None
        } else if self.last_warned.take().is_some() {
            Some(Event::Recovered)
        } else {
            None
        }
    }
}

/// Starts the monitor once if the configuration sets any `lag-alert`.
pub fn start_if_configured(config: Option<&crate::config::Config>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    let wanted = config
        .is_some_and(|c| c.lag_alert.is_some() || c.dbs.iter().any(|d| d.lag_alert.is_some()));
    if !wanted {
        return;
    }
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("litestream-monitor".into())
            .spawn(run);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the lag-alert monitor; lag alerts are not logged (the status still shows them)");
        }
    });
}

fn run() {
    let mut alerts: HashMap<std::path::PathBuf, Alert> = HashMap::new();
    crate::panic_guard::supervise("litestream-monitor", || {
        std::thread::sleep(LAG_CHECK_INTERVAL);
        for db in crate::registry::all() {
            let Some(threshold) = db.config.lag_alert else {
                continue;
            };
            let s = crate::status::of(&db);
            let alert = alerts.entry(db.path.clone()).or_default();
            match alert.observe(Instant::now(), s.lag, threshold.as_secs_f64()) {
                Some(Event::Exceeded) => tracing::warn!(
                    db = %s.db,
                    replica = %s.replica,
                    lag_seconds = s.lag,
                    lag_alert = %crate::config::format_go_duration(threshold),
                    pending_transactions = s.pending_transactions,
                    last_error = s.last_error.as_deref().unwrap_or("none"),
                    "replication lag exceeds lag-alert; check the replica (last_error) and PRAGMA litestream.status"
                ),
                Some(Event::Recovered) => tracing::warn!(
                    db = %s.db,
                    lag_seconds = s.lag,
                    "replication lag back under lag-alert"
                ),
                None => {}
            }
        }
        std::ops::ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited_and_recovery_is_reported_once() {
        let mut a = Alert::default();
        let t0 = Instant::now();
        assert_eq!(a.observe(t0, 0.5, 1.0), None);
        assert_eq!(a.observe(t0, 2.0, 1.0), Some(Event::Exceeded));
        assert_eq!(a.observe(t0 + Duration::from_secs(1), 3.0, 1.0), None);
        assert_eq!(
            a.observe(t0 + LAG_ALERT_REPEAT, 60.0, 1.0),
            Some(Event::Exceeded)
        );
        assert_eq!(
            a.observe(t0 + LAG_ALERT_REPEAT, 0.0, 1.0),
            Some(Event::Recovered)
        );
        assert_eq!(a.observe(t0 + LAG_ALERT_REPEAT, 0.0, 1.0), None);
        assert_eq!(
            a.observe(t0 + LAG_ALERT_REPEAT, 1.5, 1.0),
            Some(Event::Exceeded)
        );
    }
}

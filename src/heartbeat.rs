//! `heartbeat-url`: a background thread (`litestream-heartbeat`, started only when the
//! configuration sets `heartbeat-url`) sends `GET heartbeat-url` at most once per
//! `heartbeat-interval`, and only while every database this process replicates is healthy,
//! as Litestream 0.5 does (its `Store.monitorHeartbeats`): a dead-man's switch for services
//! such as healthchecks.io, which alert when the pings stop.
//!
//! Litestream calls a database healthy when its last successful sync is within the interval;
//! it syncs every second even when idle. Ours syncs only when there is something to ship, so a
//! database is healthy when nothing is pending, or when its last sync succeeded within the
//! interval and none has failed since (see [`healthy`]). Without `heartbeat-url` no thread
//! runs and no request is made.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::progress::Snapshot;
use crate::replica::http::{HttpClient, Request, Sign, Tuning};
use crate::replica::ReplicaError;

/// How often the thread wakes to decide whether a ping is due (Litestream's
/// `DefaultHeartbeatCheckInterval`): a ping is at most this late after its interval.
const HEARTBEAT_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Longest wait for a heartbeat answer (Litestream's `DefaultHeartbeatTimeout`): a slow
/// health-check service must not hold the thread past the next check for long.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
/// One attempt per ping: a failed ping is not retried before the next interval, as Litestream
/// does, so a flapping endpoint is not flooded.
const HEARTBEAT_ATTEMPTS: u32 = 1;

/// Whether one database counts as replicated for the heartbeat at `now`.
pub fn healthy(s: &Snapshot, now: SystemTime, interval: Duration) -> bool {
    if s.stopped.is_some() || s.capture_error.is_some() {
        return false;
    }
    if s.pending_txns == 0 {
        return true;
    }
    let recent = s
        .last_sync
        .is_some_and(|t| now.duration_since(t).unwrap_or_default() <= interval);
    recent && s.last_error.is_none()
}

/// Whether a ping is due at `now`: the interval passed since the last one (or none was sent)
/// and there is at least one database, every one healthy.
pub fn due(
    last_ping: Option<Instant>,
    now: Instant,
    interval: Duration,
    snapshots: &[Snapshot],
) -> bool {
    let waited = last_ping.is_none_or(|t| now.duration_since(t) >= interval);
    let wall = SystemTime::now();
    waited && !snapshots.is_empty() && snapshots.iter().all(|s| healthy(s, wall, interval))
}

/// Starts the heartbeat thread once if the configuration sets `heartbeat-url`; true if it runs.
pub fn start_if_configured(config: Option<&crate::config::Config>) -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let Some((url, interval)) =
        config.and_then(|c| Some((c.heartbeat_url.clone()?, c.heartbeat_interval)))
    else {
        return false;
    };
    *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("litestream-heartbeat".into())
            .spawn(move || run(&url, interval));
        match spawned {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the heartbeat thread; heartbeat-url gets no pings");
                false
            }
        }
    })
}

/// Heartbeat requests carry no credentials: the URL is the secret (it is never logged).
struct NoAuth;

impl Sign for NoAuth {
    fn sign(&self, _req: &mut Request) -> Result<(), ReplicaError> {
        Ok(())
    }
}

/// The URL without its path and query, for logs (health-check URLs embed a secret token).
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "heartbeat-url".to_string(),
    }
}

/// Sends one ping; the error says what failed.
fn ping(client: &HttpClient, url: &str) -> Result<(), String> {
    let shown = shown(url);
    let resp = client
        .send(
            "HEARTBEAT",
            &shown,
            Request::new(http::Method::GET, url.to_string()),
            &NoAuth,
        )
        .map_err(|e| e.to_string())?;
    if resp.status.is_success() {
        Ok(())
    } else {
        Err(format!("{shown} answered {}", resp.status))
    }
}

fn run(url: &str, interval: Duration) {
    let tuning = Tuning {
        attempt_timeout: HEARTBEAT_TIMEOUT,
        max_attempts: HEARTBEAT_ATTEMPTS,
        ..Tuning::default()
    };
    let client = match HttpClient::new("heartbeat", tuning) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat disabled: cannot build its HTTP client");
            return;
        }
    };
    tracing::info!(url = %shown(url), interval = %crate::config::format_go_duration(interval), "heartbeat enabled");
    let mut last_ping: Option<Instant> = None;
    crate::panic_guard::supervise("litestream-heartbeat", || {
        std::thread::sleep(HEARTBEAT_CHECK_INTERVAL);
        let snapshots: Vec<Snapshot> = crate::registry::all()
            .iter()
            .map(|db| db.progress.snapshot())
            .collect();
        if due(last_ping, Instant::now(), interval, &snapshots) {
            // Counted from the attempt, as Litestream does: a failing endpoint gets one ping
            // per interval, not one per check.
            last_ping = Some(Instant::now());
            match ping(&client, url) {
                Ok(()) => tracing::debug!(url = %shown(url), "heartbeat ping sent"),
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat ping failed; retried after heartbeat-interval")
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            txid: 3,
            replicated_txid: 3,
            pending_txns: 0,
            pending_bytes: 0,
            oldest_pending_ms: None,
            last_sync: None,
            last_error: None,
            capture_error: None,
            stopped: None,
        }
    }

    #[test]
    fn a_database_is_healthy_when_caught_up_or_syncing_without_errors() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        assert!(healthy(&snap(), now, minute), "idle and caught up");
        let pending = Snapshot {
            pending_txns: 2,
            ..snap()
        };
        assert!(!healthy(&pending, now, minute), "pending, never synced");
        let syncing = Snapshot {
            last_sync: Some(now - Duration::from_secs(5)),
            ..pending.clone()
        };
        assert!(healthy(&syncing, now, minute));
        let stale = Snapshot {
            last_sync: Some(now - Duration::from_secs(61)),
            ..pending.clone()
        };
        assert!(!healthy(&stale, now, minute), "last sync too old");
        let failing = Snapshot {
            last_error: Some("put: connection refused".into()),
            ..syncing.clone()
        };
        assert!(!healthy(&failing, now, minute));
        let stopped = Snapshot {
            stopped: Some("uploader panicked".into()),
            ..snap()
        };
        assert!(!healthy(&stopped, now, minute));
        let capture = Snapshot {
            capture_error: Some("bad frame".into()),
            ..snap()
        };
        assert!(!healthy(&capture, now, minute));
    }

    #[test]
    fn pings_wait_for_the_interval_and_for_every_database() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(!due(None, t0, minute, &[]), "no database: no ping");
        assert!(due(None, t0, minute, &[snap()]), "first check pings");
        assert!(!due(
            Some(t0),
            t0 + Duration::from_secs(59),
            minute,
            &[snap()]
        ));
        assert!(due(Some(t0), t0 + minute, minute, &[snap()]));
        let bad = Snapshot {
            stopped: Some("x".into()),
            ..snap()
        };
        assert!(
            !due(None, t0, minute, &[snap(), bad]),
            "one unhealthy database"
        );
    }

    #[test]
    fn logged_url_hides_path_and_query() {
        assert_eq!(
            shown("https://hc-ping.com/6f1e-secret?x=1"),
            "https://hc-ping.com/…"
        );
        assert_eq!(shown("not a url"), "heartbeat-url");
    }

    #[test]
    fn nothing_starts_without_a_heartbeat_url() {
        assert!(!start_if_configured(None));
        assert!(!start_if_configured(
            Some(&crate::config::Config::default())
        ));
    }
}

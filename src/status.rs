//! What `PRAGMA litestream.status`, `litestream_status()`, `litestream_lag()` and the metrics
//! report, built from a database's in-memory [`crate::progress::Progress`] (no I/O, no waiting
//! for an upload in progress: cheap enough for a health check every second).
//!
//! Read replicas: a database served by a follower (`crate::follower::routing::for_db_path`)
//! reports the follower's status; `litestream_lag()` there is the age of the follower's last
//! confirmation that it holds the replica's newest TXID.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::database::Database;
use crate::progress::now_ms;
use crate::shared_status::SharedStatus;
use crate::TxId;

/// The replication status of one managed (primary) database.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub db: String,
    pub replica: String,
    pub txid: TxId,
    pub replicated_txid: TxId,
    pub pending_transactions: u64,
    pub pending_bytes: u64,
    pub last_sync: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Seconds (see [`crate::progress::Snapshot::lag_seconds`]).
    pub lag: f64,
    /// `lag-alert` in seconds, if configured.
    pub lag_alert: Option<f64>,
}

impl Status {
    pub fn lag_alert_exceeded(&self) -> bool {
        self.lag_alert.is_some_and(|a| self.lag > a)
    }

    /// The JSON object of `PRAGMA litestream.status` / `litestream_status()`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct J<'a> {
            role: &'static str,
            db: &'a str,
            replica: &'a str,
            txid: String,
            replicated_txid: String,
            pending_transactions: u64,
            pending_bytes: u64,
            last_sync: Option<String>,
            last_error: Option<&'a str>,
            lag: f64,
            lag_alert: Option<f64>,
            lag_alert_exceeded: bool,
        }
        let j = J {
            role: "primary",
            db: &self.db,
            replica: &self.replica,
            txid: crate::format_txid(self.txid),
            replicated_txid: crate::format_txid(self.replicated_txid),
            pending_transactions: self.pending_transactions,
            pending_bytes: self.pending_bytes,
            last_sync: self.last_sync.map(rfc3339),
            last_error: self.last_error.as_deref(),
            lag: self.lag,
            lag_alert: self.lag_alert,
            lag_alert_exceeded: self.lag_alert_exceeded(),
        };
        serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
    }
}

/// RFC 3339 UTC with milliseconds, as Litestream prints times.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// The status of `db` now. In a process that does not stage it (another process of the machine
/// does, `docs/staging.md`), what the stager published, with this process's own commits it
/// does not cover yet counted as pending.
pub fn of(db: &Database) -> Status {
    if let Some(peer) = db.peer_status() {
        return of_peer(db, peer.shared.unwrap_or_default(), peer.own);
    }
    let snap = db.progress.snapshot();
    let lag = snap.lag_seconds(now_ms());
    let last_error = match (snap.stopped, snap.capture_error, snap.last_error) {
        (Some(s), _, _) => Some(s),
        (None, Some(c), _) => Some(format!("capture failed: {c}")),
        (None, None, e) => e,
    };
    Status {
        db: db.path.display().to_string(),
        replica: db.client.describe(),
        txid: snap.txid,
        replicated_txid: snap.replicated_txid,
        pending_transactions: snap.pending_txns,
        pending_bytes: snap.pending_bytes,
        last_sync: snap.last_sync,
        last_error,
        lag,
        lag_alert: db.config.lag_alert.map(|d| d.as_secs_f64()),
    }
}

/// The status of a database another process stages: `shared` as it published it, `own` this
/// process's commits it does not cover yet (oldest commit time, count).
fn of_peer(db: &Database, shared: SharedStatus, own: Option<(i64, u64)>) -> Status {
    let oldest = match (own.map(|(t, _)| t), shared.oldest_pending_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let snap = crate::progress::Snapshot {
        oldest_pending_ms: oldest,
        ..Default::default()
    };
    let ms = |t: i64| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(t.max(0) as u64);
    Status {
        db: db.path.display().to_string(),
        replica: db.client.describe(),
        txid: shared.txid,
        replicated_txid: shared.replicated_txid,
        pending_transactions: shared.pending_transactions.max(own.map_or(0, |(_, n)| n)),
        pending_bytes: shared.pending_bytes,
        last_sync: shared.last_sync_ms.map(ms),
        last_error: shared.last_error,
        lag: snap.lag_seconds(now_ms()),
        lag_alert: db.config.lag_alert.map(|d| d.as_secs_f64()),
    }
}

/// The gauges of every managed database for a metrics scrape ([`crate::metrics::GaugeSource`]).
pub fn metric_gauges() -> Vec<crate::metrics::DbGauges> {
    crate::registry::all()
        .iter()
        .map(|db| {
            let s = of(db);
            crate::metrics::DbGauges {
                db: db.path.display().to_string(),
                txid: s.txid,
                replicated_txid: s.replicated_txid,
                lag_seconds: s.lag,
                pending_transactions: s.pending_transactions,
                pending_bytes: s.pending_bytes,
            }
        })
        .collect()
}

/// `litestream_lag()` for the database file at `path`: the primary's lag, or the seconds since a
/// follower last confirmed it was current; `None` when the extension does not manage it.
pub fn lag_for_path(path: &Path) -> Option<f64> {
    if let Some(db) = crate::registry::get(path) {
        return Some(of(&db).lag);
    }
    let f = crate::follower::routing::for_db_path(path)?;
    // A follower that has not confirmed it is current yet: lag since it was opened is unknown,
    // so report it as "never confirmed" with the largest value rather than 0.
    Some(
        f.status()
            .lag_seconds(SystemTime::now())
            .unwrap_or(f64::INFINITY),
    )
}

/// `litestream_status()` for the database file at `path`, as JSON; `None` when not managed.
pub fn json_for_path(path: &Path) -> Option<String> {
    if let Some(db) = crate::registry::get(path) {
        return Some(of(&db).to_json());
    }
    let f = crate::follower::routing::for_db_path(path)?;
    let mut j = f.status().to_json(SystemTime::now());
    if let Some(obj) = j.as_object_mut() {
        obj.insert("role".into(), "replica".into());
        obj.insert("db".into(), path.display().to_string().into());
    }
    Some(j.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let s = Status {
            db: "/d/a.db".into(),
            replica: "file:///r".into(),
            txid: 3,
            replicated_txid: 2,
            pending_transactions: 4,
            pending_bytes: 100,
            last_sync: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500)),
            last_error: Some("boom".into()),
            lag: 2.5,
            lag_alert: Some(1.0),
        };
        assert_eq!(
            s.to_json(),
            r#"{"role":"primary","db":"/d/a.db","replica":"file:///r","txid":"0000000000000003","replicated_txid":"0000000000000002","pending_transactions":4,"pending_bytes":100,"last_sync":"1970-01-01T00:00:01.500Z","last_error":"boom","lag":2.5,"lag_alert":1.0,"lag_alert_exceeded":true}"#
        );
        let quiet = Status {
            lag: 0.0,
            lag_alert: None,
            last_sync: None,
            last_error: None,
            ..s
        };
        assert!(!quiet.lag_alert_exceeded());
        assert!(quiet.to_json().contains(r#""last_sync":null,"last_error":null,"lag":0.0,"lag_alert":null,"lag_alert_exceeded":false"#));
    }

    #[test]
    fn unmanaged_path_has_no_lag_or_status() {
        let p = Path::new("/nonexistent/unmanaged-status-test.db");
        assert_eq!(lag_for_path(p), None);
        assert_eq!(json_for_path(p), None);
    }
}

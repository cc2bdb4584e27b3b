//! Prometheus metrics, off by default: `addr: ":9090"` in `litestream.yml` serves
//! `GET /metrics` (text format 0.0.4) from a background thread of the extension ([`http`]).
//!
//! Counters are recorded by the code that does the work, through this small API:
//! - backends: [`record_request`], [`record_request_bytes`], [`record_request_error`] per
//!   replica request (`replica_type` as [`crate::replica::ReplicaClient::kind`], `operation`
//!   `GET`/`PUT`/`LIST`/`DELETE`/`HEAD`, …);
//! - the uploader: [`record_sync`], [`record_sync_error`], [`record_upload`] per database.
//!
//! Gauges (TXID, replicated TXID, lag, pending transactions and bytes) are read from each managed
//! database's status when scraped, through the [`GaugeSource`] given to [`endpoint::start`]. Names follow Litestream's where one exists
//! (`litestream_txid`, `litestream_sync_count`, `litestream_replica_operation_total`, …).

pub mod endpoint;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

#[derive(Debug, Default, Clone, PartialEq)]
struct DbCounters {
    syncs: u64,
    sync_errors: u64,
    sync_seconds: f64,
    uploaded_bytes: u64,
    uploads: u64,
}

#[derive(Debug, Default)]
struct Counters {
    /// (replica_type, operation) → count.
    requests: BTreeMap<(String, String), u64>,
    request_bytes: BTreeMap<(String, String), u64>,
    request_errors: BTreeMap<(String, String), u64>,
    dbs: BTreeMap<String, DbCounters>,
}

fn counters() -> &'static Mutex<Counters> {
    static C: OnceLock<Mutex<Counters>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(Counters::default()))
}

fn key(replica_type: &str, operation: &str) -> (String, String) {
    (replica_type.to_string(), operation.to_string())
}

/// One request to a replica (`replica_type` e.g. `s3`, `operation` e.g. `PUT`).
pub fn record_request(replica_type: &str, operation: &str) {
    *counters()
        .lock()
        .requests
        .entry(key(replica_type, operation))
        .or_default() += 1;
}

/// Bytes sent or received by requests to a replica.
pub fn record_request_bytes(replica_type: &str, operation: &str, bytes: u64) {
    *counters()
        .lock()
        .request_bytes
        .entry(key(replica_type, operation))
        .or_default() += bytes;
}

/// A request to a replica that failed.
pub fn record_request_error(replica_type: &str, operation: &str) {
    *counters()
        .lock()
        .request_errors
        .entry(key(replica_type, operation))
        .or_default() += 1;
}

fn with_db(db: &Path, f: impl FnOnce(&mut DbCounters)) {
    let mut c = counters().lock();
    f(c.dbs.entry(db.display().to_string()).or_default());
}

/// A successful sync of `db` (seal + upload) that took `took`.
pub fn record_sync(db: &Path, took: Duration) {
    with_db(db, |c| {
        c.syncs += 1;
        c.sync_seconds += took.as_secs_f64();
    });
}

/// A failed sync of `db` (it is retried).
pub fn record_sync_error(db: &Path) {
    with_db(db, |c| c.sync_errors += 1);
}

/// One L0 file of `bytes` acknowledged by the replica of `db`.
pub fn record_upload(db: &Path, bytes: u64) {
    with_db(db, |c| {
        c.uploads += 1;
        c.uploaded_bytes += bytes;
    });
}

/// Per-database gauges at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct DbGauges {
    pub db: String,
    pub txid: u64,
    pub replicated_txid: u64,
    pub lag_seconds: f64,
    pub pending_transactions: u64,
    pub pending_bytes: u64,
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Where the scrape-time gauges come from: the layer that knows the managed databases
/// ([`crate::status`]) hands this in when it starts the endpoint, so this leaf layer, which
/// the replica backends call, never names the layers above it.
pub type GaugeSource = fn() -> Vec<DbGauges>;

/// The text exposition of every metric, with the gauges of the managed databases.
pub fn render(gauges: &[DbGauges]) -> String {
    let c = counters().lock();
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, v: &dyn Fn(&DbGauges) -> String| {
        family(out, name, "gauge", help);
        for g in gauges {
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {}", label(&g.db), v(g));
        }
    };
    gauge(
        &mut out,
        "litestream_txid",
        "Highest TXID sealed locally.",
        &|g| g.txid.to_string(),
    );
    gauge(
        &mut out,
        "litestream_replicated_txid",
        "Highest TXID the replica acknowledged.",
        &|g| g.replicated_txid.to_string(),
    );
    gauge(
        &mut out,
        "litestream_lag_seconds",
        "Age of the oldest committed transaction the replica has not acknowledged (0 when caught up).",
        &|g| g.lag_seconds.to_string(),
    );
    gauge(
        &mut out,
        "litestream_pending_transactions",
        "Committed transactions not acknowledged by the replica.",
        &|g| g.pending_transactions.to_string(),
    );
    gauge(
        &mut out,
        "litestream_pending_bytes",
        "Bytes staged locally and not acknowledged by the replica.",
        &|g| g.pending_bytes.to_string(),
    );
    // Every managed database has every counter, at 0 until something happens.
    let zero = DbCounters::default();
    let mut names: std::collections::BTreeSet<&str> = c.dbs.keys().map(String::as_str).collect();
    names.extend(gauges.iter().map(|g| g.db.as_str()));
    let per_db = |out: &mut String, name: &str, help: &str, v: &dyn Fn(&DbCounters) -> String| {
        family(out, name, "counter", help);
        for db in &names {
            let d = c.dbs.get(*db).unwrap_or(&zero);
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {}", label(db), v(d));
        }
    };
    per_db(
        &mut out,
        "litestream_sync_count",
        "Successful syncs to the replica.",
        &|d| d.syncs.to_string(),
    );
    per_db(
        &mut out,
        "litestream_sync_error_count",
        "Failed syncs to the replica (each is retried).",
        &|d| d.sync_errors.to_string(),
    );
    per_db(
        &mut out,
        "litestream_sync_seconds",
        "Time spent in successful syncs.",
        &|d| d.sync_seconds.to_string(),
    );
    per_db(
        &mut out,
        "litestream_uploaded_bytes",
        "Bytes of LTX files acknowledged by the replica.",
        &|d| d.uploaded_bytes.to_string(),
    );
    let per_op = |out: &mut String, name: &str, help: &str, m: &BTreeMap<(String, String), u64>| {
        family(out, name, "counter", help);
        for ((t, op), n) in m {
            let _ = writeln!(
                out,
                "{name}{{replica_type=\"{}\",operation=\"{}\"}} {n}",
                label(t),
                label(op)
            );
        }
    };
    per_op(
        &mut out,
        "litestream_replica_operation_total",
        "Requests to replicas, by replica type and operation.",
        &c.requests,
    );
    per_op(
        &mut out,
        "litestream_replica_operation_bytes",
        "Bytes transferred by requests to replicas.",
        &c.request_bytes,
    );
    per_op(
        &mut out,
        "litestream_replica_operation_errors_total",
        "Failed requests to replicas.",
        &c.request_errors,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_every_family_and_escapes_labels() {
        record_request("test-kind", "PUT");
        record_request("test-kind", "PUT");
        record_request_bytes("test-kind", "PUT", 4096);
        record_request_error("test-kind", "LIST");
        let db = Path::new("/tmp/metrics \"test\".db");
        record_sync(db, Duration::from_millis(250));
        record_sync_error(db);
        record_upload(db, 100);
        let text = render(&[DbGauges {
            db: "/x/a.db".into(),
            txid: 7,
            replicated_txid: 6,
            lag_seconds: 1.5,
            pending_transactions: 2,
            pending_bytes: 8192,
        }]);
        for want in [
            "# TYPE litestream_txid gauge",
            "litestream_txid{db=\"/x/a.db\"} 7",
            "litestream_replicated_txid{db=\"/x/a.db\"} 6",
            "litestream_lag_seconds{db=\"/x/a.db\"} 1.5",
            "litestream_pending_transactions{db=\"/x/a.db\"} 2",
            "litestream_pending_bytes{db=\"/x/a.db\"} 8192",
            "litestream_sync_error_count{db=\"/x/a.db\"} 0",
            "litestream_sync_count{db=\"/tmp/metrics \\\"test\\\".db\"} 1",
            "litestream_sync_error_count{db=\"/tmp/metrics \\\"test\\\".db\"} 1",
            "litestream_sync_seconds{db=\"/tmp/metrics \\\"test\\\".db\"} 0.25",
            "litestream_uploaded_bytes{db=\"/tmp/metrics \\\"test\\\".db\"} 100",
            "litestream_replica_operation_total{replica_type=\"test-kind\",operation=\"PUT\"} 2",
            "litestream_replica_operation_bytes{replica_type=\"test-kind\",operation=\"PUT\"} 4096",
            "litestream_replica_operation_errors_total{replica_type=\"test-kind\",operation=\"LIST\"} 1",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in:\n{text}");
        }
        // Every sample line belongs to a family announced before it.
        let mut announced = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                announced.insert(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(announced.contains(name), "{l}");
            }
        }
    }
}

//! `addr:` in the configuration: the extension serves Prometheus metrics at `/metrics` from a
//! background thread; checked with real HTTP requests while a `sqlite3` shell replicates.
//!
//! Needs: the extension (`LITESTREAM_SO`), `sqlite3`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use litestream_tests::paths::sqlite3_shell;
use litestream_tests::*;

/// A port that was free a moment ago (the extension binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1; `None` while nothing listens yet.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    Some(resp)
}

/// The value of the sample line `name{labels}` in a scrape.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_endpoint_reports_the_replicating_database() {
    let s = Scratch::new("metrics");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let port = free_port();
    let cfg = Config::new()
        .extra(&format!("addr: \"127.0.0.1:{port}\""))
        .db(&db, &replica)
        .sync_interval("0")
        .write(&s.join("litestream.yml"));
    let mut child = Command::new(sqlite3_shell())
        .arg("-batch")
        .env("LITESTREAM_CONFIG", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sqlite3");
    let mut stdin = child.stdin.take().unwrap();
    let script = format!(
        "{}BEGIN;\nCREATE TABLE t(x);\nINSERT INTO t VALUES (1);\nCOMMIT;\nPRAGMA litestream.checkpoint;\n",
        ext_prefix(&vfs_uri(&db, None))
    );
    stdin.write_all(script.as_bytes()).unwrap();
    stdin.flush().unwrap();

    let db_label = format!("{{db=\"{}\"}}", db.display());
    let mut body = String::new();
    wait_until(Duration::from_secs(60), || {
        body = get(port, "/metrics").unwrap_or_default();
        sample(&body, &format!("litestream_replicated_txid{db_label}")) == Some(1.0)
            && sample(&body, &format!("litestream_pending_transactions{db_label}")) == Some(0.0)
            // The sync that acknowledged it is counted when it ends.
            && sample(&body, &format!("litestream_sync_count{db_label}")).is_some_and(|n| n >= 1.0)
    });
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4"),
        "{body}"
    );
    for (series, want) in [
        (format!("litestream_txid{db_label}"), 1.0),
        (format!("litestream_replicated_txid{db_label}"), 1.0),
        (format!("litestream_lag_seconds{db_label}"), 0.0),
        (format!("litestream_pending_transactions{db_label}"), 0.0),
        (format!("litestream_pending_bytes{db_label}"), 0.0),
        (format!("litestream_sync_error_count{db_label}"), 0.0),
    ] {
        assert_eq!(sample(&body, &series), Some(want), "{series} in:\n{body}");
    }
    for series in [
        format!("litestream_sync_count{db_label}"),
        format!("litestream_uploaded_bytes{db_label}"),
        "litestream_replica_operation_total{replica_type=\"file\",operation=\"PUT\"}".to_string(),
        "litestream_replica_operation_bytes{replica_type=\"file\",operation=\"PUT\"}".to_string(),
        "litestream_replica_operation_total{replica_type=\"file\",operation=\"LIST\"}".to_string(),
    ] {
        assert!(
            sample(&body, &series).is_some_and(|v| v >= 1.0),
            "{series} in:\n{body}"
        );
    }
    let missing = get(port, "/other").unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

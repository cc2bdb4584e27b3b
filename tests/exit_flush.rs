//! The exit-time flush of the extension in the `sqlite3` shell (`.quit` → `exit`). glibc runs
//! the exiting thread's thread-local destructors before `atexit` handlers; the flush once logged
//! from there: a panic backtrace was printed into the host's stderr, its warning was lost, and
//! the writer lease was not released.
//!
//! Needs: the extension, `sqlite3`.

use std::net::TcpListener;

use litestream_tests::*;

/// What std prints when thread-local storage is used after its destruction.
const TLS_PANIC: &str = "Thread Local Storage";

#[track_caller]
fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains(TLS_PANIC) && !stderr.contains("panicked"),
        "the exit-time flush panicked:\n{stderr}"
    );
}

#[test]
fn an_unreachable_store_at_exit_is_reported_without_a_panic() {
    let s = Scratch::new("exit-flush-unreachable");
    // A loopback port nothing listens on once the listener is dropped: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = s.join("app.db");
    let cfg = s.write(
        "litestream.yml",
        &format!(
            "shutdown-sync-timeout: 2s\nlogging:\n  level: info\ndbs:\n  - path: {}\n    replica:\n      \
             type: s3\n      bucket: b\n      path: app.db\n      endpoint: http://127.0.0.1:{port}\n      \
             region: us-east-1\n      access-key-id: AKIAEXITTEST\n      secret-access-key: exit-secret\n",
            db.display()
        ),
    );
    let uri = format!("{}?vfs=litestream", file_uri(&db));
    let o = sqlite3_ext(
        &uri,
        Some(&cfg),
        "CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n.quit",
    );
    assert!(o.success(), "{o}");
    assert_no_panic(&o.stderr);
    assert!(
        o.stderr
            .contains("exit: not everything reached the replica"),
        "the exit-time warning was lost:\n{o}"
    );
}

#[test]
fn the_lease_is_released_at_exit() {
    let s = Scratch::new("exit-flush-release");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let uri = vfs_uri(&db, Some(&replica));
    let script = format!(
        "{}CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n.quit\n",
        ext_prefix(&uri)
    );
    let o = sqlite3(&script, &[("LOG_LEVEL", std::path::Path::new("debug"))]);
    assert!(o.success(), "{o}");
    assert_no_panic(&o.stderr);
    assert!(o.stderr.contains("writer lease released"), "{o}");
    let lease = std::fs::read_to_string(replica.join("lease.json")).unwrap();
    assert!(
        lease.contains("\"expires_ms\": 0"),
        "the lease was not released:\n{lease}"
    );
}

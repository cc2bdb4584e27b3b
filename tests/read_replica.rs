//! Read replicas under load: a primary process (python3 loading the extension) moves money
//! between accounts continuously; in this process several threads read the replica through
//! the extension (`?vfs=litestream&mode=ro&replica=…`) while a python3 process reads the same
//! file with plain SQLite. Every read transaction must see the invariant (the total), the
//! sequence number must never go back, `integrity_check` must pass, writes must be refused,
//! and the replica must end up equal to the primary.
//!
//! Needs: the extension (`LITESTREAM_SO`), `/usr/bin/python3`.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litestream_tests::bank::*;
use litestream_tests::*;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// How long the primary writes (workload length, not an assertion); override with
/// `LITESTREAM_TEST_SECONDS`.
fn run_seconds() -> u64 {
    std::env::var("LITESTREAM_TEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

fn replica_uri(ro: &std::path::Path, replica: &std::path::Path) -> String {
    format!(
        "{}?vfs=litestream&mode=ro&replica={}",
        file_uri(ro),
        file_uri(replica).replacen("file:", "file://", 1)
    )
}

fn open_replica(uri: &str) -> Connection {
    load_extension_in_process();
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    violations: AtomicU64,
    backwards: AtomicU64,
    errors: AtomicU64,
    max_seq: AtomicU64,
    min_seq: AtomicU64,
}

/// One reader thread: `reopen_every` > 0 opens a new connection every that many reads.
fn reader(uri: String, stop: Arc<AtomicBool>, t: Arc<Tally>, reopen_every: u64) {
    let mut conn = open_replica(&uri);
    let err = conn
        .execute("INSERT INTO accounts VALUES (1000, 5)", [])
        .expect_err("a write through a read replica must fail");
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::ReadOnly),
        "writes through the replica fail with SQLITE_READONLY: {err}"
    );
    let mut last = -1i64;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        if reopen_every > 0 && n.is_multiple_of(reopen_every) {
            conn = open_replica(&uri);
        }
        match bank_read(&conn) {
            Ok(r) => {
                t.reads.fetch_add(1, Ordering::Relaxed);
                if !r.consistent() {
                    eprintln!("violation: {r:?}");
                    t.violations.fetch_add(1, Ordering::Relaxed);
                }
                if r.seq < last {
                    eprintln!("backwards: {last} -> {}", r.seq);
                    t.backwards.fetch_add(1, Ordering::Relaxed);
                }
                last = last.max(r.seq);
                t.max_seq.fetch_max(r.seq as u64, Ordering::Relaxed);
                t.min_seq.fetch_min(r.seq as u64, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("reader error: {e}");
                t.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if n.is_multiple_of(40) {
            match conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)) {
                Ok(s) if s == "ok" => {}
                other => {
                    eprintln!("integrity_check: {other:?}");
                    t.violations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[test]
fn bank_transfers_stay_consistent_on_the_replica() {
    let s = Scratch::new("rr-bank");
    let db = s.join("primary.db");
    let replica = s.join("replica");
    let ro = s.join("ro.db");
    let stop = s.join("stop");
    let cfg = s.write(
        "litestream.yml",
        &format!(
            "dbs:\n  - path: {}\n    replica: {{type: file, path: {}, sync-interval: 100ms}}\n",
            db.display(),
            replica.display()
        ),
    );
    let seed = seed_from_env_or_random();
    eprintln!("seed {seed} (replay with LITESTREAM_TEST_SEED={seed})");
    let uri = format!("{}?vfs=litestream", file_uri(&db));
    let mut writer = python_command(
        BANK_WRITER,
        &[&uri, &stop.to_string_lossy(), &seed.to_string(), "1"],
        &[("LITESTREAM_CONFIG", cfg.as_path())],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the python writer");

    // The replica is restored by the first open; wait until it holds the initialised tables.
    let ruri = replica_uri(&ro, &replica);
    assert!(
        wait_until(Duration::from_secs(60), || max_txid(&replica) >= 1),
        "the primary wrote no replica file"
    );
    let probe = open_replica(&ruri);
    assert!(
        wait_until(Duration::from_secs(60), || bank_read(&probe).is_ok()),
        "the replica never showed the bank tables"
    );

    let stop_readers = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally {
        min_seq: AtomicU64::new(u64::MAX),
        ..Tally::default()
    });
    let threads: Vec<_> = [0u64, 0, 10, 25]
        .into_iter()
        .map(|reopen| {
            let (uri, stop, t) = (ruri.clone(), stop_readers.clone(), tally.clone());
            std::thread::spawn(move || reader(uri, stop, t, reopen))
        })
        .collect();
    let reader_stop = s.join("stop-reader");
    let py_reader = python_command(
        BANK_READER,
        &[&ro.to_string_lossy(), &reader_stop.to_string_lossy()],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the python reader");

    std::thread::sleep(Duration::from_secs(run_seconds()));
    std::fs::write(&stop, b"").unwrap();
    let mut out = String::new();
    writer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = writer.wait().unwrap();
    let mut werr = String::new();
    writer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut werr)
        .unwrap();
    assert!(status.success(), "writer failed: {status}\n{out}\n{werr}");
    let final_seq: i64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("writer output: {out:?}\n{werr}"));
    eprintln!("writer: {out}");

    // Staleness is bounded: the replica becomes equal to the primary once writes stop.
    let seen = wait_until_eq(Duration::from_secs(60), &final_seq, || {
        bank_read(&probe).map(|r| r.seq).unwrap_or(-1)
    });
    assert_eq!(
        seen, final_seq,
        "the replica did not catch up with the primary"
    );
    std::fs::write(&reader_stop, b"").unwrap();
    stop_readers.store(true, Ordering::Release);
    for t in threads {
        t.join().expect("reader thread panicked");
    }
    let py = py_reader.wait_with_output().unwrap();
    let py_out = String::from_utf8_lossy(&py.stdout);
    eprintln!(
        "python reader: {py_out}{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(py.status.success(), "python reader failed");
    let last = py_out.lines().last().unwrap_or_default();
    let field = |k: &str| -> u64 {
        last.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("python reader summary lacks {k}: {last:?}"))
    };

    let t = &tally;
    let (reads, violations, backwards, errors) = (
        t.reads.load(Ordering::Relaxed),
        t.violations.load(Ordering::Relaxed),
        t.backwards.load(Ordering::Relaxed),
        t.errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "threads: reads={reads} violations={violations} backwards={backwards} errors={errors} \
         seq {}..{}",
        t.min_seq.load(Ordering::Relaxed),
        t.max_seq.load(Ordering::Relaxed)
    );
    assert_eq!(violations, 0, "invariant violated on the replica (threads)");
    assert_eq!(backwards, 0, "a reader saw the replica go back in time");
    assert_eq!(errors, 0, "reader errors (threads)");
    assert!(reads > 0, "the reader threads read nothing");
    assert!(
        t.max_seq.load(Ordering::Relaxed) > t.min_seq.load(Ordering::Relaxed),
        "the readers never saw the replica advance while they read"
    );
    assert_eq!(field("violations"), 0, "invariant violated (python reader)");
    assert_eq!(field("backwards"), 0, "python reader saw time go back");
    assert_eq!(field("errors"), 0, "python reader errors");
    assert!(
        field("reads") > 0 && field("states") > 1,
        "python reader: {last}"
    );

    assert_eq!(bank_balances(&ro), bank_balances(&db), "replica != primary");
    assert!(integrity_ok(&ro), "integrity_check of the replica");
    let status: String = probe
        .query_row("SELECT litestream_replica_status()", [], |r| r.get(0))
        .unwrap();
    let txid_of = |k: &str| {
        status
            .split(&format!("\"{k}\":\""))
            .nth(1)
            .and_then(|r| r.get(..16))
            .map(str::to_string)
    };
    assert_eq!(
        txid_of("txid"),
        Some(format!("{:016x}", max_txid(&replica))),
        "{status}"
    );
    assert_eq!(txid_of("primary_txid"), txid_of("txid"), "{status}");
    assert!(!status.contains("\"lag\":null"), "{status}");

    // The SQL surface of a primary works on the replica too: the follower's status, and the lag
    // as seconds since it last confirmed it was current.
    let (lag, sql_status): (Option<f64>, Option<String>) = probe
        .query_row("SELECT litestream_lag(), litestream_status()", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let lag = lag.expect("litestream_lag() is NULL on a read replica");
    assert!(lag.is_finite() && lag >= 0.0, "litestream_lag() = {lag}");
    let sql_status = sql_status.expect("litestream_status() is NULL on a read replica");
    assert!(sql_status.contains("\"role\":\"replica\""), "{sql_status}");
}

//! A read replica follows a replica written by the official `litestream replicate` 0.5.17:
//! a python3 process (plain SQLite) moves money between accounts, the official binary ships
//! it, and reader threads in this process read the replica through the extension
//! (`?vfs=litestream&mode=ro&replica=…`). Every read sees the invariant; the replica ends
//! equal to the primary.
//!
//! Needs: the extension (`LITESTREAM_SO`), the official binary, `/usr/bin/python3`.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litestream_tests::bank::*;
use litestream_tests::replica::describe;
use litestream_tests::*;
use rusqlite::{Connection, OpenFlags};

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

#[test]
fn follows_a_replica_written_by_official_replicate() {
    let s = Scratch::new("rr-official");
    let db = s.join("primary.db");
    let replica = s.join("replica");
    let ro = s.join("ro.db");
    let stop = s.join("stop");
    let seed = seed_from_env_or_random();
    eprintln!("seed {seed} (replay with LITESTREAM_TEST_SEED={seed})");
    let mut writer = python_command(
        BANK_WRITER,
        &[
            &file_uri(&db),
            &stop.to_string_lossy(),
            &seed.to_string(),
            "0",
        ],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the python writer");
    assert!(
        wait_until(Duration::from_secs(60), || bank_seq(&db).is_some()),
        "the writer did not initialise the database"
    );
    let mut rep = Replicator::with_url(&db, &file_url(&replica), &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || max_txid(&replica) >= 1),
        "official replicate wrote nothing; log:\n{}",
        rep.log()
    );

    let uri = format!(
        "{}?vfs=litestream&mode=ro&replica={}",
        file_uri(&ro),
        file_uri(&replica).replacen("file:", "file://", 1)
    );
    let probe = open_replica(&uri);
    assert!(
        wait_until(Duration::from_secs(60), || bank_read(&probe).is_ok()),
        "the replica never showed the bank tables"
    );
    let stop_readers = Arc::new(AtomicBool::new(false));
    let (reads, violations, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (uri, stop) = (uri.clone(), stop_readers.clone());
            let (reads, violations, errors) = (reads.clone(), violations.clone(), errors.clone());
            std::thread::spawn(move || {
                let conn = open_replica(&uri);
                let mut last = -1;
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    match bank_read(&conn) {
                        Ok(r) if r.consistent() && r.seq >= last => last = r.seq,
                        Ok(r) => {
                            eprintln!("violation: {r:?} after seq {last}");
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("reader error: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(50) {
                        let ic: String = conn
                            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                            .unwrap_or_else(|e| e.to_string());
                        if ic != "ok" {
                            eprintln!("integrity_check: {ic}");
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(8));
    std::fs::write(&stop, b"").unwrap();
    let mut out = String::new();
    writer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = writer.wait().unwrap();
    assert!(status.success(), "writer failed: {status} {out}");
    let final_seq: i64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("writer output: {out:?}"));
    let seen = wait_until_eq(Duration::from_secs(90), &final_seq, || {
        bank_read(&probe).map(|r| r.seq).unwrap_or(-1)
    });
    rep.assert_running();
    stop_readers.store(true, Ordering::Release);
    for t in threads {
        t.join().expect("reader thread panicked");
    }
    let log = rep.stop();
    assert_eq!(
        seen,
        final_seq,
        "the replica did not catch up with the primary; replica files: {}\nlog:\n{log}",
        describe(&list_ltx(&replica))
    );
    let (reads, violations, errors) = (
        reads.load(Ordering::Relaxed),
        violations.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "readers: reads={reads} violations={violations} errors={errors}; final seq {final_seq}"
    );
    assert_eq!(violations, 0, "invariant violated on the replica");
    assert_eq!(errors, 0, "reader errors");
    assert!(reads > 0);
    assert_eq!(bank_balances(&ro), bank_balances(&db), "replica != primary");
    assert!(integrity_ok(&ro));
}

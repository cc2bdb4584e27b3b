//! Read replicas from the configuration: `litestream read-replica sync` restores once and then
//! resumes (downloading only new files), `status` reports, opening a missing primary serves its
//! read replica read-only, and `promote` turns the replica into the primary that continues the
//! TXID chain (restorable by the official binary and ours).
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestream_tests::procs::run_with_input;
use litestream_tests::replica::describe;
use litestream_tests::*;

struct Setup {
    s: Scratch,
    db: PathBuf,
    replica: PathBuf,
    ro: PathBuf,
    cfg: PathBuf,
}

fn setup(name: &str) -> Setup {
    let s = Scratch::new(name);
    let db = s.join("primary.db");
    let replica = s.join("replica");
    let ro = s.join("ro.db");
    let cfg = s.write(
        "litestream.yml",
        &format!(
            "dbs:\n  - path: {}\n    replica: {{type: file, path: {}, sync-interval: 0}}\n    read-replicas:\n      - {{name: reporting, type: sqlite, path: {}, poll-interval: 100ms}}\n",
            db.display(),
            replica.display(),
            ro.display()
        ),
    );
    Setup {
        s,
        db,
        replica,
        ro,
        cfg,
    }
}

/// Runs our CLI with `LOG_LEVEL=debug` (the log says what was downloaded).
fn ours_debug(args: &[&str]) -> Output {
    let mut cmd = Command::new(our_bin());
    cmd.args(args).env("LOG_LEVEL", "debug");
    run_with_input(cmd, &format!("litestream {}", args.join(" ")), b"")
}

/// One shell session writing through the extension; exiting flushes to the replica.
fn write_primary(st: &Setup, sql: &str) {
    let out = sqlite3_ext(&vfs_uri(&st.db, None), Some(&st.cfg), sql);
    assert!(out.success(), "{out}");
}

fn count(db: &Path) -> i64 {
    query(db, "SELECT count(*) FROM t;").trim().parse().unwrap()
}

#[test]
fn sync_restores_once_then_resumes_with_only_new_files() {
    let st = setup("rr-resume");
    write_primary(&st, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
    for _ in 0..3 {
        write_primary(
            &st,
            "INSERT INTO t(v) SELECT randomblob(700) FROM (SELECT 1 UNION ALL SELECT 2);",
        );
    }
    let cfg = st.cfg.to_string_lossy().to_string();
    let first_max = max_txid(&st.replica);
    let out = ours_debug(&["read-replica", "sync", "-config", &cfg, "reporting"]).ok();
    assert_eq!(out.stdout.trim(), format!("{first_max:016x}"), "{out}");
    assert!(out.stderr.contains("read replica restored"), "{out}");
    assert_eq!(count(&st.ro), count(&st.db));
    assert_eq!(query(&st.ro, "PRAGMA journal_mode;").trim(), "delete");

    for _ in 0..2 {
        write_primary(&st, "INSERT INTO t(v) VALUES (randomblob(5000));");
    }
    let files = list_ltx(&st.replica);
    // L0 files only: the compactor may also have merged them into an L1 file by now.
    let new_files = files
        .iter()
        .filter(|f| f.level == 0 && f.min > first_max)
        .count();
    assert!(new_files >= 2, "{}", describe(&files));
    let out = ours_debug(&["read-replica", "sync", "-config", &cfg, "reporting"]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("{:016x}", max_txid(&st.replica)),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("read replica resumes from its recorded TXID"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("restore complete"),
        "a full restore ran again: {out}"
    );
    let fetched = out.stderr.matches("fetched ltx file").count();
    // One request per file, and no more files than the new L0 ones (fewer when a compacted
    // file covers them): nothing older than the recorded TXID is downloaded again.
    assert!(
        (1..=new_files).contains(&fetched),
        "resuming downloads only new files (one request each), {fetched} for {new_files}: {out}"
    );
    assert_same_dump(&st.ro, &st.db, "replica after resume");

    let out = run_ours(&["read-replica", "status", "-config", &cfg, "-json"]).ok();
    let want_txid = format!("\"txid\":\"{:016x}\"", max_txid(&st.replica));
    assert!(out.stdout.contains(&want_txid), "{out}");
    assert!(out.stdout.contains("\"name\":\"reporting\""), "{out}");
    let out = run_ours(&["read-replica", "status", "-config", &cfg]).ok();
    assert!(out.stdout.contains("reporting"), "{out}");
}

#[test]
fn missing_primary_serves_the_read_replica_then_promote_continues_the_chain() {
    let st = setup("rr-failover");
    write_primary(
        &st,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'), ('b'), ('c');",
    );
    write_primary(&st, "INSERT INTO t(v) VALUES ('d');");
    let cfg = st.cfg.to_string_lossy().to_string();
    run_ours(&["read-replica", "sync", "-config", &cfg, "reporting"]).ok();
    let before = max_txid(&st.replica);

    // The primary's volume is gone.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = st.db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let out = sqlite3(
        &format!(
            ".load {}\n.open {}\nSELECT count(*) FROM t;\nINSERT INTO t(v) VALUES ('nope');\nSELECT group_concat(v) FROM t;\n",
            so_load_arg(),
            vfs_uri(&st.db, None)
        ),
        &[("LITESTREAM_CONFIG", st.cfg.as_path())],
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec!["4", "a,b,c,d"],
        "{out}"
    );
    assert!(
        out.stderr.contains("attempt to write a readonly database"),
        "{out}"
    );
    assert!(
        out.stderr.contains("serving its read replica read-only"),
        "the failover is logged: {out}"
    );
    assert!(!st.db.exists(), "failover must not create the primary file");

    // A writer uploaded moments ago: promotion is refused.
    let out = run_ours(&["read-replica", "promote", "-config", &cfg, "reporting"]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("refusing to promote"), "{out}");
    assert!(st.ro.exists());
    // Once no file arrived for the live window, it proceeds.
    let mut last = None;
    let promoted = wait_until(Duration::from_secs(60), || {
        let o = run_ours(&[
            "read-replica",
            "promote",
            "-config",
            &cfg,
            "-live-window",
            "1s",
            "reporting",
        ]);
        let ok = o.success();
        last = Some(o);
        ok
    });
    let out = last.unwrap();
    assert!(promoted, "{out}");
    assert!(
        out.stdout.contains(&format!("at txid {before:016x}")),
        "{out}"
    );
    let status = run_ours(&["read-replica", "status", "-config", &cfg]).ok();
    assert!(status.stdout.contains("promoted"), "{status}");

    // The promoted file is the primary now: written through the extension with the same
    // replica, it continues the chain.
    let cfg2 = st.s.write(
        "promoted.yml",
        &format!(
            "dbs:\n  - path: {}\n    replica: {{type: file, path: {}, sync-interval: 0}}\n",
            st.ro.display(),
            st.replica.display()
        ),
    );
    let out = sqlite3_ext(
        &vfs_uri(&st.ro, None),
        Some(&cfg2),
        "INSERT INTO t(v) VALUES ('e'), ('f');\nSELECT count(*) FROM t;",
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "6", "{out}");
    let files = list_ltx(&st.replica);
    let first_new = files.iter().filter(|f| f.min > before).map(|f| f.min).min();
    assert_eq!(
        first_new,
        Some(before + 1),
        "the promoted primary continues at TXID {:#x}: {}",
        before + 1,
        describe(&files)
    );
    assert!(coverage_gaps(&files).is_empty(), "{}", describe(&files));
    assert_restores_to(&st.s, &st.replica, &st.ro, "after-promote");
}

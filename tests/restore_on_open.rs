//! Restore on open: `restore-if-db-not-exists: true` or the URI parameter `restore=1` restores a
//! missing database before SQLite opens it; replication then continues the replica's TXID chain
//! with incremental files. No replica: a new empty database. Concurrent openers restore once.
//!
//! Needs: the extension, our CLI, the official binary, `sqlite3`, `/usr/bin/python3`.

use std::path::Path;

use litestream_tests::*;

/// Builds a replica of a database with `rows` rows (about 100 pages) through the extension.
fn seed_replica(s: &Scratch, replica: &Path, rows: i64) -> u64 {
    let db = s.join("seed.db");
    let cfg = Config::new()
        .db(&db, replica)
        .sync_interval("0")
        .write(&s.join("seed.yml"));
    let mut w = Session::open(
        &vfs_uri(&db, None),
        1,
        &[("LITESTREAM_CONFIG", &cfg)],
        &s.join("seed.log"),
    );
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
    w.exec(&format!(
        "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
         WHERE x < {rows}) SELECT x, randomblob(1500) FROM c;"
    ));
    w.close();
    max_txid(replica)
}

/// The files written after `txid`: they continue the chain and are not full images.
#[track_caller]
fn assert_continues(replica: &Path, txid: u64) {
    let files = list_ltx(replica);
    let l0_after: Vec<&LtxName> = files
        .iter()
        .filter(|f| f.level == 0 && f.min > txid)
        .collect();
    assert!(
        !l0_after.is_empty(),
        "nothing new after TXID {txid:x}: {}",
        describe(&files)
    );
    assert_eq!(
        l0_after[0].min,
        txid + 1,
        "the chain was not continued: {}",
        describe(&files)
    );
    for f in &l0_after {
        assert!(
            !is_full_database(&f.path),
            "{} is a full image: replication started over",
            f.path.display()
        );
        assert!(read_header(&f.path).commit > 50);
    }
}

fn seed(s: &Scratch, replica: &Path) -> u64 {
    seed_replica(s, replica, 300)
}

#[test]
fn uri_parameter_restores_then_continues_the_chain() {
    let s = Scratch::new("restore-open-uri");
    let replica = s.join("replica");
    let txid = seed(&s, &replica);
    let db = s.join("restored.db");
    let uri = format!("{}&restore=1", vfs_uri(&db, Some(&replica)));
    let mut w = Session::open(&uri, 1, &[], &s.join("open.log"));
    assert_eq!(w.query_i64("SELECT count(*) FROM t;"), 300);
    w.exec("INSERT INTO t VALUES (1001, 'after restore');");
    w.exec("UPDATE t SET v = 'changed' WHERE id = 7;");
    let log = w.close();
    assert_eq!(
        log.matches("restored the missing database").count(),
        1,
        "{log}"
    );
    assert_continues(&replica, txid);
    assert_restores_to(&s, &replica, &db, "after-restore-on-open");
}

#[test]
fn config_key_restores_a_missing_database() {
    let s = Scratch::new("restore-open-config");
    let replica = s.join("replica");
    let txid = seed(&s, &replica);
    let db = s.join("app.db");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("0")
        .restore_if_missing()
        .write(&s.join("app.yml"));
    let out = sqlite3_ext(
        &vfs_uri(&db, None),
        Some(&cfg),
        "SELECT count(*) FROM t;\nINSERT INTO t VALUES (2002, 'x');",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "300", "{out}");
    assert_continues(&replica, txid);
    assert_restores_to(&s, &replica, &db, "config-restore");
    // Opening again: the database exists now, nothing is restored a second time.
    let out = sqlite3_ext(&vfs_uri(&db, None), Some(&cfg), "SELECT count(*) FROM t;").ok();
    assert_eq!(out.stdout.trim(), "301");
    assert!(
        !out.stderr.contains("restored the missing database"),
        "{out}"
    );
}

#[test]
fn no_replica_gives_a_new_empty_database() {
    let s = Scratch::new("restore-open-empty");
    let replica = s.join("replica");
    let db = s.join("new.db");
    let uri = format!("{}&restore=1", vfs_uri(&db, Some(&replica)));
    let out = sqlite3_ext(
        &uri,
        None,
        "SELECT count(*) FROM sqlite_master;\nCREATE TABLE t(x);\nINSERT INTO t VALUES (1);",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "0", "{out}");
    assert!(db.is_file());
    let files = list_ltx(&replica);
    assert_eq!(
        files.first().map(|f| (f.level, f.min)),
        Some((0, 1)),
        "{}",
        describe(&files)
    );
    assert_restores_to(&s, &replica, &db, "new-db");
}

/// Eight threads of one process open the missing database at the same moment.
const CONCURRENT: &str = r#"
import threading
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
uri, n = ARGS[0], 8
barrier = threading.Barrier(n)
counts, errors = [], []
def opener():
    barrier.wait()
    try:
        c = sqlite3.connect(uri, uri=True, timeout=30)
        counts.append(c.execute("SELECT count(*) FROM t").fetchone()[0])
        c.close()
    except Exception as e:
        errors.append(str(e))
ts = [threading.Thread(target=opener) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(counts), errors)
"#;

#[test]
fn concurrent_openers_restore_once() {
    let s = Scratch::new("restore-open-concurrent");
    let replica = s.join("replica");
    seed(&s, &replica);
    let db = s.join("shared.db");
    let uri = format!("{}&restore=1", vfs_uri(&db, Some(&replica)));
    let mut cmd = python_command(CONCURRENT, &[&uri], &[]);
    cmd.env("LOG_LEVEL", "info");
    let out = cmd.output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "[300, 300, 300, 300, 300, 300, 300, 300] []",
        "{stderr}"
    );
    assert_eq!(stderr.matches("restore complete").count(), 1, "{stderr}");
    assert_restores_to(&s, &replica, &db, "concurrent");
}

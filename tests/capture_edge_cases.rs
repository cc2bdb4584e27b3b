//! What the extension captures from the WAL, case by case, each driven by `sqlite3` shell
//! scripts (one by python): after the writer exits, both restores must equal the database,
//! plus a specific check per case.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`, and
//! `/usr/bin/python3` for the several-connections case.

use std::path::{Path, PathBuf};

use litestream_tests::replica::{describe, is_full_database};
use litestream_tests::*;

struct Case {
    s: Scratch,
    db: PathBuf,
    replica: PathBuf,
    cfg: PathBuf,
    uri: String,
}

impl Case {
    fn new(name: &str, page_size: Option<u32>, sync_interval: &str) -> Case {
        let s = Scratch::new(name);
        let db = s.join("app.db");
        let replica = s.join("replica");
        if let Some(ps) = page_size {
            create_with_page_size(&db, ps);
        }
        let cfg = Config::new()
            .db(&db, &replica)
            .sync_interval(sync_interval)
            .write(&s.join("litestream.yml"));
        let uri = vfs_uri(&db, None);
        Case {
            s,
            db,
            replica,
            cfg,
            uri,
        }
    }

    /// Runs `body` in one shell session through the extension; panics unless it succeeds.
    #[track_caller]
    fn run(&self, body: &str) -> Output {
        let out = sqlite3_ext(&self.uri, Some(&self.cfg), body);
        assert!(out.success(), "{out}");
        out
    }

    /// Both restores equal the database; returns our restored copy.
    #[track_caller]
    fn check(&self, label: &str) -> PathBuf {
        assert_restores_to(&self.s, &self.replica, &self.db, label).0
    }

    fn replica_bytes(&self) -> u64 {
        list_ltx(&self.replica)
            .iter()
            .map(|f| std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

fn rows(n: usize, blob: usize) -> String {
    format!(
        "SELECT randomblob({blob}) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c)"
    )
}

#[test]
fn spilled_then_rolled_back_transaction_is_never_shipped() {
    let c = Case::new("edge-spill-rollback", None, "0");
    c.run(&format!(
        "PRAGMA cache_size=5;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) VALUES (randomblob(100));
         BEGIN;
         INSERT INTO t(v) {};
         UPDATE t SET v = randomblob(1600);
         ROLLBACK;
         INSERT INTO t(v) VALUES ('after');",
        rows(2000, 1500)
    ));
    let restored = c.check("spill");
    assert_eq!(query(&restored, "SELECT count(*) FROM t;").trim(), "2");
    // 3 MB of random (incompressible) rolled-back data must not be in the replica.
    let bytes = c.replica_bytes();
    assert!(
        bytes < 1 << 20,
        "the replica holds {bytes} bytes for a database of a few pages: rolled-back (spilled) \
         frames were shipped? files: {}",
        describe(&list_ltx(&c.replica))
    );
}

#[test]
fn savepoints_keep_only_released_work() {
    let c = Case::new("edge-savepoints", None, "1s");
    c.run(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         BEGIN;
         INSERT INTO t(v) VALUES ('a');
         SAVEPOINT s1;
         INSERT INTO t(v) VALUES ('lost1');
         SAVEPOINT s2;
         INSERT INTO t(v) VALUES ('lost2');
         ROLLBACK TO s1;
         INSERT INTO t(v) VALUES ('b');
         RELEASE s1;
         COMMIT;
         SAVEPOINT outer_sp;
         INSERT INTO t(v) VALUES ('c');
         SAVEPOINT inner_sp;
         UPDATE t SET v = 'lost3' WHERE v = 'a';
         ROLLBACK TO inner_sp;
         RELEASE outer_sp;
         SAVEPOINT gone;
         DELETE FROM t;
         ROLLBACK TO gone;
         RELEASE gone;",
    );
    let restored = c.check("savepoints");
    assert_eq!(
        query(
            &restored,
            "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id);"
        )
        .trim(),
        "a,b,c"
    );
}

#[test]
fn page_rewritten_many_times_in_one_transaction() {
    let c = Case::new("edge-rewrite", Some(1024), "0");
    let mut body = String::from(
        "PRAGMA cache_size=5;
         CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB);
         INSERT INTO t VALUES (1, 0, randomblob(10));
         CREATE TABLE filler(v BLOB);
         BEGIN;\n",
    );
    for i in 0..200 {
        body.push_str("UPDATE t SET n = n + 1, v = randomblob(50) WHERE id = 1;\n");
        if i % 20 == 0 {
            // push other pages through the small cache so the page is spilled and rewritten
            body.push_str(&format!("INSERT INTO filler {};\n", rows(30, 900)));
        }
    }
    body.push_str("COMMIT;\n");
    c.run(&body);
    let restored = c.check("rewrite");
    assert_eq!(
        query(&restored, "SELECT n FROM t WHERE id = 1;").trim(),
        "200"
    );
}

/// The replica loses its files between two sessions (wiped, or a new bucket at the same
/// URL) while the local state recorded the last upload only in memory: the chain must start
/// again at TXID 1 with a full image, never continue after a TXID the replica lacks. The
/// uploader finds the loss when it first compares with the replica; the full image is staged
/// at the next capture point after that, which may be in the next session if the first one
/// closed before the comparison (so two sessions write here).
#[test]
fn replica_wiped_between_sessions_restarts_the_chain() {
    let c = Case::new("edge-replica-wiped", None, "1h");
    c.run(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t(v) {r};",
        r = rows(20, 300)
    ));
    c.check("first-session");
    std::fs::remove_dir_all(&c.replica).expect("wipe the replica");
    c.run(&format!("INSERT INTO t(v) {r};", r = rows(20, 300)));
    c.run(&format!("INSERT INTO t(v) {r};", r = rows(20, 300)));
    let files = list_ltx(&c.replica);
    assert_eq!(files.first().map(|f| f.min), Some(1), "{files:?}");
    c.check("after-the-wipe");
}

#[test]
fn wal_restarts_after_checkpoints_and_sessions() {
    let c = Case::new("edge-wal-restart", None, "1s");
    c.run(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) {r};
         PRAGMA wal_checkpoint(TRUNCATE);
         INSERT INTO t(v) {r};
         PRAGMA wal_checkpoint(PASSIVE);
         INSERT INTO t(v) {r};
         UPDATE t SET v = randomblob(70) WHERE id % 4 = 0;
         PRAGMA wal_checkpoint(RESTART);
         INSERT INTO t(v) {r};
         PRAGMA wal_checkpoint(FULL);
         DELETE FROM t WHERE id % 3 = 0;",
        r = rows(50, 700)
    ));
    c.check("first-session");
    // A new session: the WAL was checkpointed and removed when the last connection closed.
    c.run(&format!(
        "INSERT INTO t(v) {r}; PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t(v) {r};",
        r = rows(10, 3000)
    ));
    c.check("second-session");
}

#[test]
fn vacuum_shrinks_the_replicated_database() {
    let c = Case::new("edge-vacuum", Some(2048), "0");
    c.run(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) {};
         CREATE INDEX t_v ON t(substr(v, 1, 8));",
        rows(1500, 1000)
    ));
    let before: u64 = query(&c.db, "PRAGMA page_count;").trim().parse().unwrap();
    c.run("DELETE FROM t WHERE id % 10 != 0; VACUUM;");
    let after: u64 = query(&c.db, "PRAGMA page_count;").trim().parse().unwrap();
    assert!(
        after * 2 < before,
        "precondition: VACUUM shrank {before} -> {after} pages"
    );
    let restored = c.check("vacuum");
    let pages: u64 = query(&restored, "PRAGMA page_count;")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pages, after, "restored page_count after VACUUM");
    let len = std::fs::metadata(&restored).unwrap().len();
    assert_eq!(
        len,
        after * 2048,
        "restored file must be truncated to the new size"
    );
}

#[test]
fn several_connections_in_one_python_process() {
    let c = Case::new("edge-connections", None, "1s");
    let out = python(
        r#"
uri = ARGS[0]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
a = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=20)
# The extension switches to WAL itself; saying so here keeps this case about connections.
a.execute("PRAGMA journal_mode=wal")
a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, v BLOB)")
b = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=20)
r = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=20)
for i in range(300):
    w = a if i % 2 == 0 else b
    if i % 25 == 0:
        w.execute("BEGIN")
        w.execute("INSERT INTO t(who, v) SELECT 'batch', randomblob(2000) FROM t LIMIT 20")
        w.execute("COMMIT")
    else:
        w.execute("INSERT INTO t(who, v) VALUES (?, randomblob(?))", ("a" if w is a else "b", i * 7))
    if i % 50 == 0:
        r.execute("BEGIN")
        r.execute("SELECT count(*) FROM t").fetchone()
        a_or_b = b if w is a else a
        a_or_b.execute("INSERT INTO t(who, v) VALUES ('during-read', randomblob(10))")
        r.execute("COMMIT")
n = r.execute("SELECT count(*) FROM t").fetchone()[0]
for conn in (a, b, r):
    conn.close()
print(n)
"#,
        &[&c.uri],
        &[("LITESTREAM_CONFIG", &c.cfg)],
    );
    assert!(out.success(), "{out}");
    let n = out.stdout.trim().to_string();
    let restored = c.check("connections");
    assert_eq!(query(&restored, "SELECT count(*) FROM t;").trim(), n);
}

fn fixed_page_size(name: &str, page_size: u32) {
    let c = Case::new(name, Some(page_size), "1s");
    let w = Workload::random(WorkloadOptions {
        page_size: Some(page_size),
        steps: 25,
        byte_budget: 10 << 20,
        ..WorkloadOptions::default()
    });
    eprintln!("{}", w.describe());
    c.run(&format!(
        "PRAGMA cache_size={};\n{}",
        w.cache_size,
        w.script()
    ));
    let restored = c.check(name);
    assert_eq!(page_size_of(&restored), page_size);
}

fn page_size_of(db: &Path) -> u32 {
    litestream_tests::page_size(db)
}

#[test]
fn page_size_512() {
    fixed_page_size("edge-512", 512);
}

#[test]
fn page_size_65536() {
    fixed_page_size("edge-65536", 65536);
}

#[test]
fn database_not_named_in_the_config_passes_through() {
    let c = Case::new("edge-passthrough", None, "0");
    let other = c.s.join("other.db");
    let plain = c.s.join("plain.db");
    let out = sqlite3_ext(
        &vfs_uri(&other, None),
        Some(&c.cfg),
        // dot-commands must start at the beginning of a line
        &format!(
            "CREATE TABLE x(a, b);\n\
             INSERT INTO x VALUES (1, randomblob(5000)), (2, 'two');\n\
             .open {}\n\
             CREATE TABLE y(a);\n\
             INSERT INTO y VALUES (3);\n",
            plain.display()
        ),
    );
    assert!(out.success(), "{out}");
    assert_eq!(query(&other, "SELECT count(*) FROM x;").trim(), "2");
    assert_eq!(query(&plain, "SELECT a FROM y;").trim(), "3");
    for db in [&other, &plain] {
        assert_eq!(
            query(db, "PRAGMA journal_mode;").trim(),
            "delete",
            "{} is not in the config: its journal mode must stay untouched",
            db.display()
        );
    }
    for meta in [".other.db-liblitestream", ".plain.db-liblitestream"] {
        assert!(
            !c.s.join(meta).exists(),
            "{meta} was created for an unreplicated database"
        );
    }
    let mut stray = Vec::new();
    let mut stack = vec![c.s.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ltx") {
                stray.push(p);
            }
        }
    }
    assert!(
        stray.is_empty(),
        "LTX files written for unreplicated databases: {stray:?}"
    );
}

#[test]
fn multi_megabyte_transaction() {
    let c = Case::new("edge-multi-mb", Some(4096), "0");
    c.run(&format!(
        "PRAGMA cache_size=20;
         CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB);
         BEGIN;
         INSERT INTO big(v) {};
         UPDATE big SET v = randomblob(1048576) WHERE id % 2 = 0;
         COMMIT;",
        rows(12, 1 << 20)
    ));
    let restored = c.check("multi-mb");
    assert_eq!(
        query(&restored, "SELECT count(*), sum(length(v)) FROM big;").trim(),
        "12|12582912"
    );
    let bytes = c.replica_bytes();
    assert!(
        bytes >= 12 << 20,
        "12 MB of random data cannot fit in {bytes} replica bytes"
    );
}

#[test]
fn first_file_is_a_full_snapshot_and_names_are_canonical() {
    let c = Case::new("edge-first-file", None, "1s");
    c.run(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t(v) {};",
        rows(200, 500)
    ));
    c.run("INSERT INTO t(v) VALUES ('more');");
    let files = list_ltx(&c.replica);
    let first = files
        .iter()
        .find(|f| f.level == 0 && f.min == 1)
        .unwrap_or_else(|| panic!("no ltx/0/0000000000000001-*.ltx: {}", describe(&files)));
    assert!(
        is_full_database(&first.path),
        "the first L0 file must hold every page of the database"
    );
    // Nothing but finished, canonically named LTX files in the level directories.
    for level in std::fs::read_dir(c.replica.join("ltx")).unwrap().flatten() {
        for f in std::fs::read_dir(level.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(
                litestream_tests::replica::parse_ltx_name(&name).is_some(),
                "unexpected file {} left in the replica",
                f.path().display()
            );
        }
    }
    c.check("first-file");
}

#[test]
fn existing_database_with_data_is_snapshotted_and_switched_to_wal() {
    let c = Case::new("edge-existing", None, "1s");
    sqlite3_plain(
        &c.db,
        &format!(
            "CREATE TABLE pre(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO pre(v) {};",
            rows(300, 800)
        ),
    )
    .clean();
    assert_eq!(query(&c.db, "PRAGMA journal_mode;").trim(), "delete");
    c.run("INSERT INTO pre(v) VALUES ('via the extension');");
    assert_eq!(query(&c.db, "PRAGMA journal_mode;").trim(), "wal");
    let restored = c.check("existing");
    assert_eq!(query(&restored, "SELECT count(*) FROM pre;").trim(), "301");
}

/// A process without the extension holds an exclusive rollback-mode transaction on `ARGS[0]`
/// for `ARGS[1]` seconds.
const HOLD_EXCLUSIVE: &str = r#"
import time
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
c.execute("INSERT INTO pre(v) VALUES ('written by the lock holder')")
print("locked", flush=True)
time.sleep(float(ARGS[1]))
c.execute("COMMIT")
"#;

/// Starts `HOLD_EXCLUSIVE` and returns once it holds the lock.
fn hold_exclusive(db: &Path, seconds: f64) -> std::process::Child {
    use std::io::BufRead;
    let mut cmd = python_command(
        HOLD_EXCLUSIVE,
        &[db.to_str().unwrap(), &seconds.to_string()],
        &[],
    );
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start the lock holder");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .expect("read from the lock holder");
    assert_eq!(line.trim(), "locked", "the lock holder did not start");
    child
}

#[test]
fn opening_waits_for_a_rollback_mode_writer_and_never_fails_because_of_it() {
    let c = Case::new("edge-locked-open", None, "1s");
    sqlite3_plain(
        &c.db,
        &format!(
            "CREATE TABLE pre(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO pre(v) {};",
            rows(100, 500)
        ),
    )
    .clean();
    // A lock held for less than the open's busy timeout: the open waits it out and switches
    // the database to WAL mode.
    let mut holder = hold_exclusive(&c.db, 1.0);
    c.run("INSERT INTO pre(v) VALUES ('after a short lock');");
    assert!(holder.wait().unwrap().success());
    assert_eq!(query(&c.db, "PRAGMA journal_mode;").trim(), "wal");

    // Back to rollback mode, then a lock held for longer: the switch gives up, the open still
    // succeeds, and the application's own busy timeout waits for its write.
    sqlite3_plain(&c.db, "PRAGMA journal_mode=DELETE;").ok();
    let mut holder = hold_exclusive(&c.db, 9.0);
    let out = sqlite3_ext(
        &c.uri,
        Some(&c.cfg),
        ".timeout 30000\nINSERT INTO pre(v) VALUES ('written in rollback mode');",
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stderr
            .contains("cannot switch the database to WAL mode"),
        "{out}"
    );
    assert!(holder.wait().unwrap().success());
    assert_eq!(query(&c.db, "PRAGMA journal_mode;").trim(), "delete");

    // The next connection switches it; the replica catches up with a full image.
    c.run("INSERT INTO pre(v) VALUES ('back in WAL mode');");
    assert_eq!(query(&c.db, "PRAGMA journal_mode;").trim(), "wal");
    let restored = c.check("locked-open");
    assert_eq!(query(&restored, "SELECT count(*) FROM pre;").trim(), "105");
}

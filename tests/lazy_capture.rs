//! Lazy capture (`docs/capture.md`): a commit only records SQLite's wal-index mark and the
//! uploader copies the frames later. Nothing committed may be lost when the process is killed
//! between the commit and the copy, when another program checkpoints and deletes the WAL
//! meanwhile, when a transaction is larger than the backlog bound, or when another connection
//! resets the WAL before the copy.
//!
//! Every test uses `sync-interval: 1h`: the uploader copies nothing on its own schedule, so
//! the commits under test are still uncopied when the event happens.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `/usr/bin/python3`,
//! `sqlite3`.

use std::path::{Path, PathBuf};

use litestream_tests::*;

fn setup(label: &str) -> (Scratch, PathBuf, PathBuf, PathBuf) {
    let s = Scratch::new(label);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("1h")
        .write(&s.join("litestream.yml"));
    (s, db, replica, cfg)
}

fn preloaded_python(code: &str, db: &Path, cfg: &Path) -> Output {
    let env: [(&str, &Path); 2] = [("LD_PRELOAD", &so_path()), ("LITESTREAM_CONFIG", cfg)];
    python(code, &[&db.to_string_lossy()], &env)
}

/// Ships a first image, then commits 50 rows that are only recorded (not copied) and SIGKILLs
/// itself before anything copies them.
const COMMIT_THEN_DIE: &str = r#"
import json, signal
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("create table t(id integer primary key, v text)")
c.execute("insert into t(v) values ('shipped')")
c.execute("PRAGMA litestream.checkpoint")
for i in range(50):
    c.execute("insert into t(v) values (?)", ("uncopied %d" % i,))
st = json.loads(c.execute("select litestream_status()").fetchone()[0])
# The first commit after the checkpoint starts a new WAL generation and is copied at once;
# the 49 after it are only recorded: far less than 50 copied pages are staged.
print("pending", st["pending_transactions"], st["pending_bytes"] < 5 * 4096, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"#;

/// Reopens through the extension, commits one more row and ships everything.
const REOPEN_AND_SHIP: &str = r#"
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("insert into t(v) values ('after restart')")
c.execute("PRAGMA litestream.checkpoint")
print("rows", c.execute("select count(*) from t").fetchone()[0])
"#;

fn died_with_pending(out: &Output) {
    assert_eq!(out.status.code(), None, "killed by a signal: {out}");
    assert_eq!(out.stdout.trim(), "pending 50 True", "{out}");
}

#[test]
fn killed_between_commit_and_copy_then_reopened_with_the_extension() {
    let (s, db, replica, cfg) = setup("lazy-kill-reopen");
    died_with_pending(&preloaded_python(COMMIT_THEN_DIE, &db, &cfg));
    let out = preloaded_python(REOPEN_AND_SHIP, &db, &cfg).ok();
    assert_eq!(out.stdout.trim(), "rows 52", "{out}");
    assert_restores_to(&s, &replica, &db, "lazy-kill-reopen");
}

#[test]
fn killed_between_commit_and_copy_then_checkpointed_by_plain_sqlite3() {
    let (s, db, replica, cfg) = setup("lazy-kill-plain");
    died_with_pending(&preloaded_python(COMMIT_THEN_DIE, &db, &cfg));
    // The plain shell (no extension) recovers the WAL, and its close checkpoints and deletes
    // it: the 50 uncopied commits are only in the database file now.
    let out = sqlite3_plain(&db, "SELECT count(*) FROM t;").ok();
    assert_eq!(out.stdout.trim(), "51", "{out}");
    assert!(
        !s.join("app.db-wal").exists(),
        "the plain shell removed the WAL"
    );
    let out = preloaded_python(REOPEN_AND_SHIP, &db, &cfg).ok();
    assert_eq!(out.stdout.trim(), "rows 52", "{out}");
    // Never a silent gap: the next replica file holds every page, and the log says why.
    assert!(
        out.stderr.contains("next replica file holds every page"),
        "{out}"
    );
    assert_restores_to(&s, &replica, &db, "lazy-kill-plain");
}

#[test]
fn a_transaction_larger_than_the_backlog_bound_is_captured_at_its_commit() {
    let (s, db, replica, cfg) = setup("lazy-big");
    // 72 MiB in one transaction: past LAZY_BACKLOG_BYTES (64 MiB), so its commit copies it.
    let code = r#"
import json
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("create table t(id integer primary key, v blob)")
c.execute("begin")
for i in range(72):
    c.execute("insert into t(v) values (randomblob(1024*1024))")
c.execute("commit")
st = json.loads(c.execute("select litestream_status()").fetchone()[0])
print("staged", st["pending_bytes"] > 64*1024*1024)
c.execute("insert into t(v) values (x'01')")
c.execute("PRAGMA litestream.checkpoint")
"#;
    let out = preloaded_python(code, &db, &cfg).ok();
    assert_eq!(out.stdout.trim(), "staged True", "{out}");
    assert_restores_to(&s, &replica, &db, "lazy-big");
}

#[test]
fn wal_reset_by_another_connection_before_the_copy() {
    let (s, db, replica, cfg) = setup("lazy-reset");
    // Connection a commits (recorded only); connection b of the same process truncates the
    // WAL: the reset captures a's frames first. Then a second process (not the stager)
    // truncates it too, after more uncopied commits: those frames are gone from the WAL, so the
    // stager's next commit stages a full image.
    let code = r#"
import subprocess
a = sqlite3.connect(ARGS[0], isolation_level=None)
b = sqlite3.connect(ARGS[0], isolation_level=None)
a.execute("create table t(id integer primary key, v text)")
a.execute("insert into t(v) values ('first')")
a.execute("PRAGMA litestream.checkpoint")
for i in range(20):
    a.execute("insert into t(v) values (?)", ("before reset %d" % i,))
print(b.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
for i in range(20):
    a.execute("insert into t(v) values (?)", ("after reset %d" % i,))
other = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()); c.close()"
print(subprocess.run([sys.executable, "-c", other, ARGS[0]], capture_output=True, text=True).stdout.strip())
for i in range(20):
    a.execute("insert into t(v) values (?)", ("after other %d" % i,))
a.execute("PRAGMA litestream.checkpoint")
print(a.execute("select count(*) from t").fetchone()[0])
"#;
    let out = preloaded_python(code, &db, &cfg).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("(0, 0, 0)"), "b's truncation: {out}");
    assert!(
        lines[1].starts_with("(0, 0, 0)"),
        "the other process's truncation: {out}"
    );
    assert_eq!(lines[2], "61", "{out}");
    assert_restores_to(&s, &replica, &db, "lazy-reset");
}

/// Commits recorded lazily and still uncopied when the last connection closes: the close
/// checkpoints and deletes the WAL, and the frames of those commits include some SQLite wrote
/// with deferred checksums (zero salts), which only the recorded wal-index mark vouches for.
/// A workload found by the randomized interop test; without the fix, its last commits were
/// missing from the replica while the restore still succeeded.
#[test]
fn recorded_commits_with_deferred_checksums_survive_the_last_close() {
    let (s, db, replica, cfg) = setup("lazy-close-deferred");
    let body = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lazy_close_deferred_checksums.sql"),
    )
    .expect("fixture");
    let out = sqlite3_ext(&vfs_uri(&db, None), Some(&cfg), &body);
    assert!(out.success(), "{out}");
    assert_restores_to(&s, &replica, &db, "after close");
}

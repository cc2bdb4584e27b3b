//! A new L0 file is stored in the replica before the local state records it (one durable step
//! before the file is visible, `docs/staging.md` "Seal and publish"). These tests stop the
//! writer exactly in that window — the replica has the file, `state.json` does not — through
//! the test-only `LITESTREAM_TEST_FAULT` switch (`published=abort` crashes the process there,
//! `published=1` panics the uploader there), and check that the next start continues the chain
//! from that file (no restart with a full image) and that both restores equal the database.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `/usr/bin/python3`,
//! `sqlite3`.

use std::path::{Path, PathBuf};

use litestream_tests::*;

/// What the uploader logs when it finds such a file at its next start.
const ADOPTED: &str = "the replica stored this file just before the last stop";
/// What it logs when it cannot continue the chain from the replica.
const RESTARTED: &str = "restarting the replica chain";

fn setup(label: &str, interval: &str) -> (Scratch, PathBuf, PathBuf, PathBuf) {
    let s = Scratch::new(label);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval(interval)
        .write(&s.join("litestream.yml"));
    (s, db, replica, cfg)
}

fn preloaded_python(code: &str, db: &Path, cfg: &Path, fault: Option<&str>) -> Output {
    let so = so_path();
    let mut env: Vec<(&str, &Path)> = vec![
        ("LD_PRELOAD", &so),
        ("LITESTREAM_CONFIG", cfg),
        ("LOG_LEVEL", Path::new("info")),
    ];
    if let Some(f) = fault {
        env.push(("LITESTREAM_TEST_FAULT", Path::new(f)));
    }
    python(code, &[&db.to_string_lossy()], &env)
}

const FIRST_SESSION: &str = r#"
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("create table t(id integer primary key, v text)")
for i in range(10):
    c.execute("insert into t(v) values (?)", ("first %d" % i,))
c.execute("PRAGMA litestream.checkpoint")
print("shipped", flush=True)
"#;

/// Commits one transaction and asks for a sync: the process crashes right after the replica
/// stored the file (one transaction, so that the crash cannot come between two commits).
const CRASH_IN_THE_WINDOW: &str = r#"
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("begin")
for i in range(10):
    c.execute("insert into t(v) values (?)", ("second %d" % i,))
c.execute("commit")
c.execute("PRAGMA litestream.checkpoint")
print("not reached", flush=True)
"#;

const REOPEN_AND_SHIP: &str = r#"
c = sqlite3.connect(ARGS[0], isolation_level=None)
c.execute("insert into t(v) values ('after restart')")
c.execute("PRAGMA litestream.checkpoint")
print("rows", c.execute("select count(*) from t").fetchone()[0], flush=True)
"#;

/// TXID in the meta directory's `state.json` (what the state recorded as sealed).
fn state_txid(db: &Path) -> u64 {
    let meta = db
        .with_file_name(".app.db-liblitestream")
        .join("state.json");
    let text = std::fs::read_to_string(&meta).expect("state.json");
    let rest = &text[text.find("\"txid\":").expect("a txid field") + 7..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a number")
}

fn l0_file(replica: &Path, txid: u64) -> PathBuf {
    replica.join(format!("ltx/0/{txid:016x}-{txid:016x}.ltx"))
}

/// Returns the TXID the replica stored in the window.
fn crash_in_the_window(db: &Path, replica: &Path, cfg: &Path) -> u64 {
    let out = preloaded_python(FIRST_SESSION, db, cfg, None).ok();
    assert_eq!(out.stdout.trim(), "shipped", "{out}");
    let shipped = state_txid(db);
    let out = preloaded_python(CRASH_IN_THE_WINDOW, db, cfg, Some("published=abort"));
    assert_eq!(
        out.status.code(),
        None,
        "crashed by the injected abort: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    // The window was hit: the replica has the next TXID, the state does not.
    assert!(
        l0_file(replica, shipped + 1).exists(),
        "the replica stored TXID {} before the crash: {out}",
        shipped + 1
    );
    assert_eq!(state_txid(db), shipped, "the state did not record it");
    shipped + 1
}

fn reopen_continues_the_chain(
    s: &Scratch,
    db: &Path,
    replica: &Path,
    cfg: &Path,
    stored: u64,
    rows: &str,
) {
    let out = preloaded_python(REOPEN_AND_SHIP, db, cfg, None).ok();
    assert_eq!(out.stdout.trim(), rows, "{out}");
    assert!(out.stderr.contains(ADOPTED), "the file was adopted: {out}");
    assert!(!out.stderr.contains(RESTARTED), "no chain restart: {out}");
    assert!(
        l0_file(replica, stored + 1).exists(),
        "the chain continues after TXID {stored}"
    );
    assert_restores_to(s, replica, db, "publish-crash");
}

#[test]
fn crash_after_the_replica_stored_a_file_then_reopen_with_the_extension() {
    let (s, db, replica, cfg) = setup("publish-crash-reopen", "1h");
    let stored = crash_in_the_window(&db, &replica, &cfg);
    reopen_continues_the_chain(&s, &db, &replica, &cfg, stored, "rows 21");
}

#[test]
fn crash_after_the_replica_stored_a_file_then_plain_sqlite3_then_the_extension() {
    let (s, db, replica, cfg) = setup("publish-crash-plain", "1h");
    let stored = crash_in_the_window(&db, &replica, &cfg);
    // The plain shell checkpoints and deletes the WAL on close.
    let out = sqlite3_plain(&db, "SELECT count(*) FROM t;").ok();
    assert_eq!(out.stdout.trim(), "20", "{out}");
    assert!(!db.with_file_name("app.db-wal").exists());
    reopen_continues_the_chain(&s, &db, &replica, &cfg, stored, "rows 21");
}

/// A panic of the uploader in the same window: the supervisor reloads the state from disk and
/// compares it with the replica, as a new process would, within the same process.
#[test]
fn uploader_panic_after_the_replica_stored_a_file() {
    let (s, db, replica, cfg) = setup("publish-panic", "100ms");
    let out = preloaded_python(FIRST_SESSION, &db, &cfg, Some("published=1")).ok();
    assert_eq!(out.stdout.trim(), "shipped", "{out}");
    assert!(out.stderr.contains("injected fault at published"), "{out}");
    assert!(out.stderr.contains(ADOPTED), "the file was adopted: {out}");
    assert!(!out.stderr.contains(RESTARTED), "no chain restart: {out}");
    assert_restores_to(&s, &replica, &db, "publish-panic");
}

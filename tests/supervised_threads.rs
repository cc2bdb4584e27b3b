//! Supervised background threads (`src/panic_guard.rs`): a panic in the uploader is caught,
//! logged with the database and the panic message, shown as `last_error` in
//! `litestream_status()`, and the sync restarts; a second panic right after the restart stops
//! the database's replication with a named error. Either way the application's commits keep
//! succeeding and nothing committed is lost. The panics are injected through the test-only
//! `LITESTREAM_TEST_FAULT` switch.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `/usr/bin/python3`.

use std::path::{Path, PathBuf};

use litestream_tests::*;

fn setup(label: &str) -> (Scratch, PathBuf, PathBuf, PathBuf) {
    let s = Scratch::new(label);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("100ms")
        .write(&s.join("litestream.yml"));
    (s, db, replica, cfg)
}

fn preloaded_python(code: &str, db: &Path, cfg: &Path, fault: Option<&str>) -> Output {
    let so = so_path();
    let mut env: Vec<(&str, &Path)> = vec![("LD_PRELOAD", &so), ("LITESTREAM_CONFIG", cfg)];
    if let Some(f) = fault {
        env.push(("LITESTREAM_TEST_FAULT", Path::new(f)));
    }
    python(code, &[&db.to_string_lossy()], &env)
}

/// Helpers of the snippets: the status as a dict, and waiting (with a generous bound, never a
/// timing assertion) until a condition on it holds.
const PRELUDE: &str = r#"
import json, time
c = sqlite3.connect(ARGS[0], isolation_level=None)
def status():
    return json.loads(c.execute("select litestream_status()").fetchone()[0])
def wait_for(what, cond):
    deadline = time.time() + 120
    while not cond(status()):
        if time.time() > deadline:
            print("gave up waiting for", what, status(), flush=True)
            sys.exit(3)
        time.sleep(0.002)
"#;

const PANIC_ONCE: &str = r#"
c.execute("create table t(id integer primary key, v text)")
c.execute("insert into t(v) values ('before the panic')")
wait_for("the panic", lambda s: "the uploader panicked" in (s["last_error"] or ""))
print("last_error:", status()["last_error"], flush=True)
for i in range(20):
    c.execute("insert into t(v) values (?)", ("after the panic %d" % i,))
wait_for("the replica to catch up", lambda s: s["pending_transactions"] == 0
         and s["last_error"] is None and s["replicated_txid"] == s["txid"])
print("caught up", c.execute("select count(*) from t").fetchone()[0], flush=True)
"#;

#[test]
fn an_uploader_panic_is_logged_shown_and_survived() {
    let (s, db, replica, cfg) = setup("panic-once");
    let out = preloaded_python(
        &format!("{PRELUDE}{PANIC_ONCE}"),
        &db,
        &cfg,
        Some("uploader=1"),
    )
    .ok();
    let mut lines = out.stdout.lines();
    let shown = lines.next().unwrap_or_default();
    assert!(
        shown.starts_with(
            "last_error: internal error: the uploader panicked (injected fault at uploader"
        ),
        "{out}"
    );
    assert_eq!(lines.next(), Some("caught up 21"), "{out}");
    // The log line names the database and carries the panic message.
    let logged = out
        .stderr
        .lines()
        .find(|l| l.contains("the uploader panicked while syncing this database"))
        .unwrap_or_else(|| panic!("no panic log line: {out}"));
    assert!(logged.contains(&db.display().to_string()), "{logged}");
    assert!(logged.contains("injected fault at uploader"), "{logged}");
    assert_restores_to(&s, &replica, &db, "panic-once");
}

const PANIC_TWICE: &str = r#"
c.execute("create table t(id integer primary key, v text)")
c.execute("insert into t(v) values ('before the panics')")
wait_for("the stop", lambda s: (s["last_error"] or "").startswith("replication stopped"))
for i in range(20):
    c.execute("insert into t(v) values (?)", ("after the stop %d" % i,))
s = status()
print("rows", c.execute("select count(*) from t").fetchone()[0], flush=True)
print("last_error:", s["last_error"], flush=True)
print("pending", s["pending_transactions"] > 0, flush=True)
"#;

/// Reopens through the extension (no fault), commits one more row and ships everything.
const REOPEN_AND_SHIP: &str = r#"
c.execute("insert into t(v) values ('after reopening')")
c.execute("PRAGMA litestream.checkpoint")
print("rows", c.execute("select count(*) from t").fetchone()[0], flush=True)
"#;

#[test]
fn a_second_panic_at_once_stops_replication_and_loses_nothing() {
    let (s, db, replica, cfg) = setup("panic-twice");
    let out = preloaded_python(
        &format!("{PRELUDE}{PANIC_TWICE}"),
        &db,
        &cfg,
        Some("uploader=2"),
    )
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"rows 21"),
        "writes keep succeeding: {out}"
    );
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with(
            "last_error: replication stopped: the uploader panicked again right after restarting (injected fault at uploader"
        )),
        "{out}"
    );
    assert_eq!(lines.get(2), Some(&"pending True"), "{out}");
    assert!(
        out.stderr.contains("replication of this database stopped"),
        "{out}"
    );
    // The next process that opens the database ships what the stopped one staged.
    let out = preloaded_python(&format!("{PRELUDE}{REOPEN_AND_SHIP}"), &db, &cfg, None).ok();
    assert_eq!(out.stdout.trim(), "rows 22", "{out}");
    assert_restores_to(&s, &replica, &db, "panic-twice");
}

//! `LD_PRELOAD=liblitestream.so`: unmodified programs (the `sqlite3` shell, Debian's python3,
//! whose `_sqlite3` module is loaded after start-up) replicate the databases the configuration
//! names and pass the others through; the final sync at exit ships the last commit; the SQL
//! surface works without any `.load`.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`,
//! `/usr/bin/python3`.

use std::path::Path;
use std::process::Command;

use litestream_tests::paths::sqlite3_shell;
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

/// Runs the plain `sqlite3` shell on `db` with the extension preloaded.
fn preloaded_sqlite3(db: &Path, cfg: &Path, sql: &str) -> Output {
    let mut cmd = Command::new(sqlite3_shell());
    cmd.arg("-batch")
        .arg("-bail")
        .arg(db)
        .env("LD_PRELOAD", so_path())
        .env("LITESTREAM_CONFIG", cfg);
    run_with_input(cmd, "preloaded sqlite3", format!("{sql}\n").as_bytes())
}

fn meta_dir(db: &Path) -> std::path::PathBuf {
    let name = db.file_name().unwrap().to_string_lossy();
    db.with_file_name(format!(".{name}-liblitestream"))
}

#[test]
fn sqlite3_shell_replicates_configured_databases_only() {
    let s = Scratch::new("preload-cli");
    let db = s.join("app.db");
    let other = s.join("other.db");
    let replica = s.join("replica");
    // 1h: only the checkpoint and the final sync at exit ship anything.
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("1h")
        .write(&s.join("litestream.yml"));

    let out = preloaded_sqlite3(
        &db,
        &cfg,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n\
         INSERT INTO t(v) VALUES ('one'), ('two');\n\
         PRAGMA journal_mode;\n\
         PRAGMA database_list;\n\
         PRAGMA litestream.checkpoint;\n\
         SELECT litestream_lag();\n\
         PRAGMA litestream.page_size;\n\
         PRAGMA litestream.integrity_check;\n\
         SELECT count(*) FROM litestream.sqlite_schema;\n\
         INSERT INTO t(v) VALUES ('three');",
    )
    // Clean: in particular no "attempt to configure SQLite after initialization" warnings.
    .clean();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "wal", "{out}");
    assert_eq!(lines[1], format!("0|main|{}", db.display()), "{out}");
    assert_eq!(lines[2], "2|litestream|litestream~ctl", "{out}");
    assert!(
        lines[3].starts_with(r#"{"replicated_txid":"#) && lines[3].contains(r#""busy":0"#),
        "{out}"
    );
    assert_eq!(
        lines[4], "0.0",
        "caught up right after the checkpoint: {out}"
    );
    // The control database: one valid, empty page of SQLite's smallest size (what its
    // attachment costs in page cache per connection, see docs/sql-surface.md).
    assert_eq!(lines[5..8], ["512", "ok", "0"], "{out}");
    // 'three' was committed after the checkpoint: only the final sync can have shipped it.
    assert_restores_to(&s, &replica, &db, "preload-cli");
    assert_eq!(query_ids(&db, "SELECT count(*) FROM t;"), vec![3]);

    let out = preloaded_sqlite3(
        &other,
        &cfg,
        "CREATE TABLE x(a);\nPRAGMA journal_mode;\nPRAGMA database_list;\nSELECT litestream_lag() IS NULL;",
    )
    .clean();
    assert_eq!(
        out.stdout,
        format!("delete\n0|main|{}\n1\n", other.display()),
        "an unconfigured database passes through untouched"
    );
    assert!(
        !meta_dir(&other).exists(),
        "no staging for {}",
        other.display()
    );
}

#[test]
fn python_replicates_without_loading_anything() {
    let s = Scratch::new("preload-python");
    let db = s.join("app.db");
    let other = s.join("other.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("1h")
        .write(&s.join("litestream.yml"));
    let code = r#"
import json
c = sqlite3.connect(ARGS[0])
c.execute("create table t(id integer primary key, v text)")
c.executemany("insert into t(v) values (?)", [("a",), ("b",)])
c.commit()
ck = json.loads(c.execute("PRAGMA litestream.checkpoint").fetchone()[0])
print("checkpoint", sorted(ck), ck["busy"])
st = json.loads(c.execute("PRAGMA litestream.status").fetchone()[0])
print("status", sorted(st))
print("caught-up", st["role"], st["pending_transactions"], st["pending_bytes"], st["last_error"], st["lag"], st["txid"] == st["replicated_txid"] == ck["replicated_txid"])
print("function", json.loads(c.execute("select litestream_status()").fetchone()[0])["db"] == ARGS[0])
c.execute("insert into t(v) values ('c')")
c.commit()
st = json.loads(c.execute("PRAGMA litestream_status").fetchone()[0])
print("pending", st["pending_transactions"], st["lag"] >= 0)
o = sqlite3.connect(ARGS[1])
o.execute("create table x(a)")
print("other", o.execute("pragma journal_mode").fetchone()[0], o.execute("select litestream_lag()").fetchone()[0])
"#;
    let env: [(&str, &Path); 2] = [("LD_PRELOAD", &so_path()), ("LITESTREAM_CONFIG", &cfg)];
    let out = python(
        code,
        &[&db.to_string_lossy(), &other.to_string_lossy()],
        &env,
    )
    .clean();
    let want = "\
checkpoint ['busy', 'checkpointed', 'log', 'replicated_txid'] 0
status ['db', 'lag', 'lag_alert', 'lag_alert_exceeded', 'last_error', 'last_sync', 'pending_bytes', 'pending_transactions', 'replica', 'replicated_txid', 'role', 'txid']
caught-up primary 0 0 None 0.0 True
function True
pending 1 True
other delete None
";
    assert_eq!(out.stdout, want, "{out}");
    // 'c' reached the replica through the final sync at exit.
    assert_restores_to(&s, &replica, &db, "preload-python");
    assert_eq!(query_ids(&db, "SELECT count(*) FROM t;"), vec![3]);
    assert!(!meta_dir(&other).exists());
}

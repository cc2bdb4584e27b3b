//! `litestream sync [-wait] [-timeout N] [-json] DB_PATH`: against a database a python process
//! replicates through the extension, compared with the official 0.5.17 `sync` against its own
//! `replicate` daemon (control socket on): the same fields in text and JSON, the replica TXID
//! equal to the synced TXID with `-wait`; and the refusal when no process replicates a database
//! whose WAL holds commits.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI (`LITESTREAM_BIN`), python3, `sqlite3`, the
//! official binary (`LITESTREAM_OFFICIAL`).

use std::time::Duration;

use litestream_tests::session::Session;
use litestream_tests::*;

/// The keys of `key: value` lines (the text output).
fn text_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| Some(l.split_once(": ")?.0.to_string()))
        .collect()
}

/// The keys and numeric values of the flat JSON object the command prints.
fn json_fields(text: &str) -> Vec<(String, String)> {
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().trim_matches('"').to_string(), v.trim().to_string()))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], k: &str) -> &'a str {
    &fields
        .iter()
        .find(|(key, _)| key == k)
        .unwrap_or_else(|| panic!("{k} in {fields:?}"))
        .1
}

#[test]
fn sync_matches_the_official_output_and_waits_for_the_replica() {
    let s = Scratch::new("sync-cli");
    // Ours: a python process replicates through the extension.
    let db = s.join("ours.db");
    let cfg = Config::new()
        .db(&db, &s.join("replica-ours"))
        .write(&s.join("ours.yml"));
    let cfg_arg = cfg.to_string_lossy().to_string();
    let db_arg = db.to_string_lossy().to_string();
    let mut session = Session::open(
        &vfs_uri(&db, None),
        1,
        &[("LITESTREAM_CONFIG", &cfg)],
        &s.join("ours.log"),
    );
    session.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);");
    let ours_json = run_ours(&[
        "sync", "-wait", "-json", "-timeout", "60", "-config", &cfg_arg, &db_arg,
    ])
    .ok();
    let ours = json_fields(&ours_json.stdout);
    assert_eq!(field(&ours, "db_path"), format!("\"{}\"", db.display()));
    let txid = field(&ours, "txid").to_string();
    assert!(txid.parse::<u64>().unwrap() >= 1, "{ours:?}");
    assert_eq!(
        field(&ours, "replica_txid"),
        txid,
        "replicated through the synced TXID"
    );
    assert_eq!(max_txid(&s.join("replica-ours")).to_string(), txid);
    session.exec("INSERT INTO t VALUES (3);");
    let ours_text = run_ours(&["sync", "-config", &cfg_arg, &db_arg]).ok();
    assert!(
        ours_text.stdout.lines().any(|l| l
            .strip_prefix("txid: ")
            .and_then(|t| t.parse::<u64>().ok())
            > txid.parse().ok()),
        "the new commit is synced: {}",
        ours_text.stdout
    );

    // The official binary with its control socket.
    let official_db = s.join("official.db");
    sqlite3_plain(
        &official_db,
        "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let socket = s.join("ls.sock");
    let official_cfg = Config::new()
        .extra(&format!(
            "socket:\n  enabled: true\n  path: {}",
            socket.display()
        ))
        .db(&official_db, &s.join("replica-official"))
        .write(&s.join("official.yml"));
    let mut official = Replicator::with_config(&official_cfg, &s.join("official.log"));
    assert!(
        wait_until(Duration::from_secs(60), || socket.exists()),
        "official socket; log:\n{}",
        official.log()
    );
    official.assert_running();
    let sock = socket.to_string_lossy().to_string();
    let odb = official_db.to_string_lossy().to_string();
    let theirs_json = run_official(&["sync", "-wait", "-json", "-socket", &sock, &odb]).ok();
    let theirs = json_fields(&theirs_json.stdout);
    let keys = |f: &[(String, String)]| f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&ours),
        keys(&theirs),
        "JSON fields: ours {ours_json:?} official {theirs_json:?}"
    );
    let theirs_text = run_official(&["sync", "-socket", &sock, &odb]).ok();
    assert_eq!(text_keys(&ours_text.stdout), text_keys(&theirs_text.stdout));
    let ours_wait_text = run_ours(&["sync", "-wait", "-config", &cfg_arg, &db_arg]).ok();
    let theirs_wait_text = run_official(&["sync", "-wait", "-socket", &sock, &odb]).ok();
    assert_eq!(
        text_keys(&ours_wait_text.stdout),
        text_keys(&theirs_wait_text.stdout)
    );
    // Same refusals of bad flags.
    for args in [
        vec!["sync"],
        vec!["sync", "-timeout", "0", "x.db"],
        vec!["sync", "a.db", "b.db"],
    ] {
        let a = run_ours(&args);
        let b = run_official(&args);
        assert!(!a.success() && !b.success(), "{a:?} {b:?}");
    }
    official.stop();

    // -socket is accepted; the database keeps replicating.
    let o = run_ours(&[
        "sync",
        "-socket",
        "/nonexistent.sock",
        "-config",
        &cfg_arg,
        &db_arg,
    ])
    .ok();
    assert!(o.stdout.starts_with("db_path: "), "{}", o.stdout);
    session.close();
    // Nothing holds the database any more and everything was shipped at the close.
    let o = run_ours(&["sync", "-wait", "-config", &cfg_arg, &db_arg]).ok();
    let txid_line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("txid: "))
        .unwrap()
        .replace("txid: ", "replica_txid: ");
    assert!(o.stdout.contains(&txid_line), "{}", o.stdout);
}

#[test]
fn sync_refuses_commits_no_process_replicates() {
    let s = Scratch::new("sync-unreplicated");
    let db = s.join("app.db");
    let cfg = Config::new()
        .db(&db, &s.join("replica"))
        .write(&s.join("l.yml"));
    // Written without the extension; the WAL is kept (no checkpoint at close).
    sqlite3_plain(
        &db,
        ".dbconfig no_ckpt_on_close on\nPRAGMA journal_mode=wal;\nCREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n",
    )
    .ok();
    assert!(s.join("app.db-wal").exists(), "the shell kept the WAL");
    let o = run_ours(&[
        "sync",
        "-config",
        &cfg.to_string_lossy(),
        &db.to_string_lossy(),
    ]);
    assert!(!o.success(), "{o:?}");
    assert!(
        o.stderr.contains("no process replicates it"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("writer.lock"), "{}", o.stderr);
}

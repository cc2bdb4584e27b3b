//! `litestream replicate` without `-exec` (sidecar mode, docs/sidecar.md): programs that do
//! not load the extension (here the `sqlite3` shell and Debian's python, plain) write while
//! our binary follows the database from outside; official 0.5.17 and our restores must equal
//! the database.
//!
//! Needs: our CLI (`LITESTREAM_BIN`, with the extension beside it), `sqlite3`, python3, the
//! official binary (`LITESTREAM_OFFICIAL`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use litestream_tests::procs::run_with_input;
use litestream_tests::wait::wait_until;
use litestream_tests::*;

/// How long a test waits for the sidecar to ship something (an upper bound, never asserted).
const SHIP_WAIT: Duration = Duration::from_secs(30);

/// `count` autocommit inserts of 3000 random bytes by plain python (no extension), with the
/// application's autocheckpoint at 4 pages (so it checkpoints, and the WAL restarts, all the
/// time) and `pause_ms` between commits.
fn python_writes(db: &Path, count: usize, pause_ms: u64) {
    let code = "
c = sqlite3.connect(ARGS[0], isolation_level=None, timeout=20)
c.execute('PRAGMA wal_autocheckpoint=4')
import time
for i in range(int(ARGS[1])):
    c.execute('INSERT INTO t(v) VALUES(randomblob(3000))')
    time.sleep(int(ARGS[2]) / 1000)
c.close()
";
    let db_arg = db.to_string_lossy();
    let out = run_with_input(
        python_command(
            code,
            &[&db_arg, &count.to_string(), &pause_ms.to_string()],
            &[],
        ),
        "python writer",
        b"",
    );
    assert!(out.success(), "{out}");
}

/// A scratch directory with the application's database `app.db` (WAL mode, one table `t`) and
/// a configuration replicating it to `replica/`: (scratch, db, replica, config path).
fn app_with_config(name: &str) -> (Scratch, PathBuf, PathBuf, String) {
    let s = Scratch::new(name);
    let db = s.join("app.db");
    let replica = s.join("replica");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .ok();
    let cfg = Config::new()
        .db(&db, &replica)
        .write(&s.join("litestream.yml"));
    let cfg = cfg.to_string_lossy().into_owned();
    (s, db, replica, cfg)
}

/// The log lines of full images: the first one, and any chain restart (with its reason).
fn full_images(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("staging a full database image") || l.contains("holds every page reason=")
        })
        .collect()
}

/// Plain python that writes `count` rows and keeps the database open (so its WAL stays, as
/// in a running application) until its stdin closes.
fn open_application(db: &Path, count: usize) -> std::process::Child {
    let code = "
c = sqlite3.connect(ARGS[0], isolation_level=None, timeout=20)
for i in range(int(ARGS[1])):
    c.execute('INSERT INTO t(v) VALUES(randomblob(3000))')
print('ready', flush=True)
sys.stdin.read()
";
    let mut child = python_command(code, &[&db.to_string_lossy(), &count.to_string()], &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("piped")),
        &mut line,
    )
    .expect("read from python");
    assert_eq!(line.trim(), "ready");
    child
}

#[test]
fn sidecar_follows_plain_sqlite_through_checkpoints_restarts_and_vacuum() {
    let (s, db, replica, cfg) = app_with_config("sidecar-plain");
    let mut sidecar = Replicator::ours(&["-config", &cfg], &s.join("sidecar.log"));
    // Commits with pauses: the application's autocheckpoint completes and the WAL restarts
    // between them (the sidecar lets it once everything was copied).
    python_writes(&db, 200, 2);
    sidecar.assert_running();
    let wal_len = std::fs::metadata(s.join("app.db-wal")).unwrap().len();
    // 200 commits of one or two 4 KiB pages each: without restarts the WAL would hold them all.
    assert!(
        wal_len < 200 * 4096,
        "the WAL never restarted ({wal_len} bytes):\n{}",
        sidecar.log()
    );
    // The sqlite3 shell: deletes, VACUUM, an explicit TRUNCATE checkpoint (refused while the
    // sidecar reads: SQLite reports it busy, nothing fails), then a burst without pauses.
    let o = sqlite3_plain(
        &db,
        "DELETE FROM t WHERE id % 3 = 0;\nVACUUM;\nPRAGMA wal_checkpoint(TRUNCATE);",
    );
    assert!(o.success(), "{o}");
    python_writes(&db, 150, 0);
    sidecar.assert_running();
    let log_text = sidecar.stop_with(libc::SIGTERM);
    // SIGTERM: the final sync shipped everything; both restores equal the database.
    assert_restores_to(&s, &replica, &db, "sidecar");
    // No WAL-continuity break: the only full image is the first one.
    let full = full_images(&log_text);
    assert_eq!(full.len(), 1, "full images:\n{}", full.join("\n"));
    assert!(
        full[0].contains("no replicated position yet"),
        "{}",
        full[0]
    );
    // No table added to the user's database.
    assert_eq!(
        query(&db, "SELECT group_concat(name) FROM sqlite_master").trim(),
        "t"
    );
}

#[test]
fn kill9_of_the_sidecar_mid_stream_then_restart_restores_equal() {
    let (s, db, replica, cfg) = app_with_config("sidecar-kill9");
    let first = Replicator::ours(&["-config", &cfg], &s.join("first.log"));
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || python_writes(&db, 400, 1))
    };
    assert!(
        wait_until(SHIP_WAIT, || max_txid(&replica) >= 2),
        "nothing shipped:\n{}",
        std::fs::read_to_string(s.join("first.log")).unwrap_or_default()
    );
    first.kill9();
    writer.join().unwrap();
    // Written while no sidecar ran (the WAL restarted without it): the next run notices.
    python_writes(&db, 50, 0);
    let second = Replicator::ours(&["-config", &cfg], &s.join("second.log"));
    python_writes(&db, 50, 1);
    let log = second.stop_with(libc::SIGTERM);
    assert_restores_to(&s, &replica, &db, "after-kill9");
    assert!(
        full_images(&log).iter().any(|l| l.contains("reason=")),
        "the restart did not say why it shipped a full image:\n{log}"
    );
}

#[test]
fn positional_form_once_and_force_snapshot() {
    let (s, db, replica, _) = app_with_config("sidecar-once");
    // `-once` while the application runs: what it committed is in its WAL.
    let mut app = open_application(&db, 20);
    let url = file_url(&replica);
    let db_arg = db.to_string_lossy().into_owned();
    let o = run_ours(&["replicate", "-once", &db_arg, &url]);
    assert!(o.success(), "{o}");
    assert_restores_to(&s, &replica, &db, "once");
    drop(app.stdin.take());
    app.wait().unwrap();
    let mut app = open_application(&db, 5);
    let before = max_txid(&replica);
    let o = run_ours(&["replicate", "-once", "-force-snapshot", &db_arg, &url]);
    assert!(o.success(), "{o}");
    let newest = list_ltx(&replica)
        .into_iter()
        .filter(|f| f.level == 0 && f.min > before)
        .max_by_key(|f| f.max)
        .expect("-once shipped a new file");
    assert!(
        is_full_database(&newest.path),
        "-force-snapshot: {} is not a full image",
        newest.path.display()
    );
    drop(app.stdin.take());
    app.wait().unwrap();
    assert_restores_to(&s, &replica, &db, "force-snapshot");
    // The positional form, running until SIGINT.
    let mut running = Replicator::ours(&[&db_arg, &url], &s.join("positional.log"));
    python_writes(&db, 30, 1);
    running.assert_running();
    running.stop();
    assert_restores_to(&s, &replica, &db, "positional");
}

#[test]
fn an_extension_writer_ships_and_the_sidecar_defers() {
    let (s, db, replica, cfg) = app_with_config("sidecar-defer");
    let cfg_path = PathBuf::from(&cfg);
    // The application with the extension loaded commits first: it holds the stager lock.
    let mut app = Session::open(
        &vfs_uri(&db, None),
        1,
        &[("LITESTREAM_CONFIG", &cfg_path)],
        &s.join("app.log"),
    );
    app.exec("INSERT INTO t(v) VALUES(randomblob(100))");
    let mut sidecar = Replicator::ours(&["-config", &cfg], &s.join("sidecar.log"));
    assert!(
        wait_until(SHIP_WAIT, || sidecar
            .log()
            .contains("the sidecar defers to it")),
        "the sidecar did not say it defers:\n{}",
        sidecar.log()
    );
    for _ in 0..20 {
        app.exec("INSERT INTO t(v) VALUES(randomblob(100))");
    }
    sidecar.assert_running();
    // The extension's last close ships what it staged and gives the lock up; plain python
    // writes next, and the sidecar takes over.
    app.close();
    python_writes(&db, 20, 1);
    let log = sidecar.stop_with(libc::SIGTERM);
    assert!(
        log.contains("the sidecar stages and ships this database"),
        "the sidecar did not take over after the extension closed:\n{log}"
    );
    assert_restores_to(&s, &replica, &db, "defer");
}

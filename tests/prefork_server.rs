//! A real pre-forked web server on one database: gunicorn with 4 sync workers, all under
//! `LD_PRELOAD` (Debian's python3), serving a small WSGI app that inserts a row on POST and
//! reports `litestream_status()` / `litestream_lag()` on GET. A bounded load generator on
//! 127.0.0.1 drives it; mid-load the worker that ships the database (the stager, whose pid
//! the meta directory's status file names) is SIGKILLed and gunicorn starts a new one. After
//! the load, every worker's lag must return to 0 with the same replicated TXID, and both
//! restores must equal the database.
//!
//! Needs: the extension, both CLIs, `/usr/bin/python3`, and gunicorn importable by it: the
//! directory holding the `gunicorn` package in `LITESTREAM_GUNICORN_PATH`, else the test env's
//! `.venv` site-packages (`scripts/setup-test-env.sh` installs it there).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litestream_tests::paths::python3;
use litestream_tests::server_proc::free_port;
use litestream_tests::*;

const WORKERS: usize = 4;
/// Load generator: this many client threads, each sending this many POSTs (bounded load).
const CLIENTS: usize = 4;
const POSTS_PER_CLIENT: usize = 250;
/// The stager is killed once this many POSTs were answered.
const KILL_AFTER: usize = CLIENTS * POSTS_PER_CLIENT / 3;
const SYNC_INTERVAL: &str = "200ms";
/// Generous bounds for things that take a fraction of a second (never asserted as timings).
const STARTUP: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(60);

const APP: &str = r#"
import json, os, sqlite3
DB = os.environ["APP_DB"]
_conn = None

def conn():
    # Opened in the worker, after gunicorn's fork.
    global _conn
    if _conn is None:
        _conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    return _conn

def app(environ, start_response):
    c = conn()
    if environ["REQUEST_METHOD"] == "POST":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n).decode()
        c.execute("insert into t(pid, body, pad) values (?, ?, randomblob(300))", (os.getpid(), body))
        out = ("ok %d" % os.getpid()).encode()
    else:
        status, lag = c.execute("select litestream_status(), litestream_lag()").fetchone()
        out = json.dumps({"pid": os.getpid(), "status": json.loads(status), "lag": lag}).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
"#;

/// Where gunicorn is importable from (see the module comment).
fn gunicorn_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LITESTREAM_GUNICORN_PATH").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let lib = official_bin()
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join("lib"))
        .expect("the official binary lies in <venv>/bin");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("gunicorn").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "gunicorn not found under {}: run scripts/setup-test-env.sh, or set \
                 LITESTREAM_GUNICORN_PATH to a directory holding the gunicorn package",
                lib.display()
            )
        })
}

/// One HTTP/1.0 request; the response body, or `None` when the connection failed (a worker
/// killed while serving it).
fn http(port: u16, method: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// The pids of the gunicorn master's children (its workers) now.
fn workers_of(master: u32) -> BTreeSet<u32> {
    let path = format!("/proc/{master}/task/{master}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The pid the stager published in the meta directory, if any.
fn stager_pid(meta: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(meta.join("stager-status.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

fn start_gunicorn(s: &Scratch, db: &Path, cfg: &Path, port: u16) -> Child {
    std::fs::write(s.join("app.py"), APP).unwrap();
    Command::new(python3())
        .args(["-m", "gunicorn", "--workers", &WORKERS.to_string()])
        .args(["--worker-class", "sync", "--graceful-timeout", "10"])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--chdir")
        .arg(s.join(""))
        .arg("app:app")
        .env("PYTHONPATH", gunicorn_path())
        .env("LD_PRELOAD", so_path())
        .env("LITESTREAM_CONFIG", cfg)
        .env("APP_DB", db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.join("gunicorn.log")).unwrap())
        .spawn()
        .expect("start gunicorn")
}

#[test]
fn gunicorn_workers_replicate_one_database_and_all_report_true_lag() {
    let s = Scratch::new("prefork-gunicorn");
    let db = s.join("app.db");
    let meta = s.join(".app.db-liblitestream");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval(SYNC_INTERVAL)
        .write(&s.join("litestream.yml"));
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, pid INT, body TEXT, pad BLOB);",
    )
    .ok();
    let port = free_port();
    let mut master = start_gunicorn(&s, &db, &cfg, port);
    let log = || std::fs::read_to_string(s.join("gunicorn.log")).unwrap_or_default();
    assert!(
        wait_until(STARTUP, || http(port, "POST", "warm-up").is_some()),
        "gunicorn did not serve:\n{}",
        log()
    );

    // Bounded load from several clients; the stager is killed a third of the way through.
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                for i in 0..POSTS_PER_CLIENT {
                    if http(port, "POST", &format!("{c}-{i}")).is_some() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    assert!(
        wait_until(SETTLE, || answered.load(Ordering::Relaxed) >= KILL_AFTER),
        "the load did not progress:\n{}",
        log()
    );
    let victim = stager_pid(&meta).expect("a stager published its status");
    assert!(
        workers_of(master.id()).contains(&victim),
        "the stager {victim} is not one of gunicorn's workers"
    );
    signal_pid(victim, libc::SIGKILL);
    for c in clients {
        c.join().expect("load client");
    }
    assert!(
        answered.load(Ordering::Relaxed) > KILL_AFTER,
        "the load stopped after the kill:\n{}",
        log()
    );
    // gunicorn replaced the killed worker.
    assert!(
        wait_until(STARTUP, || {
            let w = workers_of(master.id());
            w.len() == WORKERS && !w.contains(&victim)
        }),
        "gunicorn did not restart the killed worker: {:?}",
        workers_of(master.id())
    );

    // Every worker reports lag 0 and the same replicated TXID, the replica's newest.
    let mut settled: BTreeMap<u32, (String, u64)> = BTreeMap::new();
    let all_settled = wait_until(SETTLE, || {
        let workers = workers_of(master.id());
        if let Some(body) = http(port, "GET", "") {
            let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
            let pid = v["pid"].as_u64().unwrap() as u32;
            if v["lag"].as_f64() == Some(0.0) {
                let st = &v["status"];
                settled.insert(
                    pid,
                    (
                        st["replicated_txid"].as_str().unwrap_or("").to_string(),
                        st["pending_transactions"].as_u64().unwrap_or(u64::MAX),
                    ),
                );
            } else {
                settled.remove(&pid);
            }
        }
        settled.retain(|p, _| workers.contains(p));
        settled.len() == WORKERS
    });
    assert!(
        all_settled,
        "not every worker reported lag 0: {settled:?} of {:?}",
        workers_of(master.id())
    );
    let txids: BTreeSet<_> = settled.values().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        txids.len(),
        1,
        "workers disagree on the replica: {settled:?}"
    );
    assert!(
        settled.values().all(|(_, pending)| *pending == 0),
        "a worker reports pending transactions at lag 0: {settled:?}"
    );
    let rows = query_ids(&db, "SELECT count(*) FROM t;")[0] as usize;
    assert!(rows > KILL_AFTER, "only {rows} rows committed");
    // The replica holds every committed row while the server still runs.
    assert_restores_to(&s, &replica, &db, "prefork-gunicorn");

    signal(&master, libc::SIGTERM);
    let status = master.wait().expect("wait for gunicorn");
    let log = log();
    assert!(status.success(), "gunicorn exited with {status}:\n{log}");
    assert!(!log.contains("panicked"), "a worker panicked:\n{log}");
}

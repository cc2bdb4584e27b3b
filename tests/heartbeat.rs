//! `heartbeat-url` / `heartbeat-interval`: the extension pings the URL (GET) once the databases
//! it replicates are healthy, like the official 0.5.17 `replicate`; checked with a real HTTP
//! server on 127.0.0.1 that records every request. Without the key no heartbeat thread exists
//! (so there are no wake-ups and no requests).
//!
//! Needs: the extension (`LITESTREAM_SO`), python3, the official binary (`LITESTREAM_OFFICIAL`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use litestream_tests::session::Session;
use litestream_tests::*;

/// Longest wait for a ping: the first check comes 15 s after the start (Litestream's check
/// interval, ours too); generous for a loaded machine.
const PING_WAIT: Duration = Duration::from_secs(120);

/// An HTTP server on 127.0.0.1 that answers `200 OK` and records each request line.
struct Recorder {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(path: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the head, up to the blank line.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                seen.lock().unwrap().push(line.trim_end().to_string());
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        Recorder { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Names of the threads of process `pid` (Linux truncates them to 15 bytes).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

fn open_and_write(db: &Path, cfg: &Path, log: &Path) -> Session {
    let mut session = Session::open(&vfs_uri(db, None), 1, &[("LITESTREAM_CONFIG", cfg)], log);
    session.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    session
}

#[test]
fn heartbeat_pings_like_the_official_binary() {
    let s = Scratch::new("heartbeat");
    let ours = Recorder::start("/ping/ours?token=secret");
    let theirs = Recorder::start("/ping/official?token=secret");

    let db = s.join("ours.db");
    let cfg = Config::new()
        .extra(&format!("heartbeat-url: {}", ours.url))
        .extra("heartbeat-interval: 1m")
        .db(&db, &s.join("replica-ours"))
        .write(&s.join("ours.yml"));
    let log = s.join("ours.log");
    let session = open_and_write(&db, &cfg, &log);

    let official_db = s.join("official.db");
    sqlite3_plain(&official_db, "PRAGMA journal_mode=wal; CREATE TABLE t(x);");
    let official_cfg = Config::new()
        .extra(&format!("heartbeat-url: {}", theirs.url))
        .extra("heartbeat-interval: 1m")
        .db(&official_db, &s.join("replica-official"))
        .write(&s.join("official.yml"));
    let mut official = Replicator::with_config(&official_cfg, &s.join("official.log"));

    assert!(
        wait_until(PING_WAIT, || !ours.requests().is_empty()
            && !theirs.requests().is_empty()),
        "pings: ours {:?}, official {:?}; our log:\n{}\nofficial log:\n{}",
        ours.requests(),
        theirs.requests(),
        session.log(),
        official.log()
    );
    official.assert_running();
    assert_eq!(
        ours.requests()[0],
        "GET /ping/ours?token=secret HTTP/1.1",
        "ours"
    );
    assert_eq!(
        theirs.requests()[0],
        "GET /ping/official?token=secret HTTP/1.1",
        "official"
    );
    let log = session.close();
    assert!(
        !log.contains("secret"),
        "the URL's token is never logged:\n{log}"
    );
    official.stop();
}

#[test]
fn no_heartbeat_thread_without_a_heartbeat_url() {
    let s = Scratch::new("heartbeat-off");
    let db = s.join("app.db");
    let cfg = Config::new()
        .db(&db, &s.join("replica"))
        .write(&s.join("litestream.yml"));
    let mut session = open_and_write(&db, &cfg, &s.join("log"));
    session.exec("INSERT INTO t VALUES (2);");
    let names = thread_names(session.pid());
    assert!(
        names.iter().any(|n| n.starts_with("litestream-comp")),
        "the extension replicates in this process: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("litestream-hea")),
        "no heartbeat thread: {names:?}"
    );
    session.close();
}

//! Datasette serving a read replica: `datasette serve follower.db --load-extension
//! liblitestream.so` (pysqlite3's bundled SQLite 3.51) with a configuration naming
//! `follower.db` as a read replica. Datasette opens it by its plain path, through the
//! `litestream` VFS (the default, `vfs.default: auto`), which restores and follows it; JSON
//! queries are answered while a primary process writes, and the answers follow the primary.
//!
//! Datasette's internal database is a shared-cache in-memory database opened before any
//! `--load-extension` runs, so the extension is also loaded at start-up by a two-line plugin
//! (`tests/hosts/python/datasette-plugins/litestream_boot.py`; README: "Use it from your
//! language").
//!
//! Needs: `scripts/setup-hosts.sh` (datasette + pysqlite3-binary in `.hosts/venv`), the
//! extension, both CLIs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use litestream_tests::hosts::{host_source, hosts_dir, require};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

/// A stuck server must fail the test instead of hanging it; Datasette answers in
/// milliseconds, so 10 s only absorbs a loaded machine.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for each wait on Datasette or the replica (start-up, a poll, an apply), generous
/// for 2 shared cores; never an assertion on speed.
const WAIT: Duration = Duration::from_secs(90);

/// Kills the child on drop (a failing test must not leave a server or writer running).
struct Killed(Option<Child>);

impl Killed {
    /// Waits for the child to exit by itself and returns what it printed.
    fn wait(mut self) -> std::process::Output {
        let child = self.0.take().expect("a running child");
        child.wait_with_output().expect("wait for the child")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One HTTP/1.0 GET on 127.0.0.1; the body, or None unless the answer is 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(HTTP_READ_TIMEOUT)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// The integer in `"rows": [[N]]` of Datasette's JSON answer to `select count(*) …`.
fn count_from_json(body: &str) -> Option<i64> {
    let at = body.find("\"rows\":")?;
    let digits: String = body[at + 7..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The primary: pysqlite3 loads the extension and inserts a row every 20 ms until the file
/// `stop` exists (at least 20 rows), then ships everything and prints the checkpoint.
const WRITER: &str = r#"
import os, sys, time
from pysqlite3 import dbapi2 as sqlite3
so, db, stop = sys.argv[1:4]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(so)
c = sqlite3.connect(db, isolation_level=None)
c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
n = 0
while not os.path.exists(stop) or n < 20:
    c.execute("INSERT INTO t(v) VALUES (?)", (f"row {n}",))
    n += 1
    time.sleep(0.02)
print(c.execute("PRAGMA litestream.checkpoint").fetchone()[0])
"#;

fn writer(python: &Path, db: &Path, stop: &Path, cfg: &Path) -> Killed {
    let child = Command::new(python)
        .arg("-c")
        .arg(WRITER)
        .arg(so_path())
        .arg(db)
        .arg(stop)
        .env("LITESTREAM_CONFIG", cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the python writer");
    Killed(Some(child))
}

#[test]
fn datasette_serves_a_read_replica_while_the_primary_writes() {
    let python = require(
        hosts_dir().join("venv/bin/python"),
        "the Python hosts' venv",
    );
    let datasette = require(hosts_dir().join("venv/bin/datasette"), "datasette");
    let s = Scratch::new("host-datasette");
    let db = s.join("app.db");
    let follower = s.join("follower.db");
    let replica = s.join("replica");
    // The primary ships every 100 ms; Datasette's configuration names the read replica.
    let primary_cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("100ms")
        .write(&s.join("primary.yml"));
    let reader_cfg = s.join("reader.yml");
    std::fs::write(
        &reader_cfg,
        format!(
            "dbs:\n  - path: {}\n    replica: {{type: file, path: {}}}\n    read-replicas:\n      - {{name: web, path: {}, poll-interval: 100ms}}\n",
            db.display(),
            replica.display(),
            follower.display()
        ),
    )
    .unwrap();

    // A first run of the primary, so that the replica exists; Datasette refuses to start on a
    // missing file, so the read replica is restored once with our CLI.
    let seeded = s.join("seeded");
    std::fs::write(&seeded, "").unwrap();
    let out = writer(&python, &db, &seeded, &primary_cfg).wait();
    assert!(out.status.success(), "seeding writer: {out:?}");
    let mut sync = Command::new(our_bin());
    sync.args(["read-replica", "sync", "web"])
        .env("LITESTREAM_CONFIG", &reader_cfg);
    run_with_input(sync, "litestream read-replica sync web", b"").ok();

    let stop = s.join("stop");
    let primary = writer(&python, &db, &stop, &primary_cfg);
    let port = free_port();
    let server = Command::new(&datasette)
        .arg("serve")
        .arg(&follower)
        .arg("--load-extension")
        .arg(so_path())
        .arg("--plugins-dir")
        .arg(host_source("python/datasette-plugins"))
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .env("LITESTREAM_CONFIG", &reader_cfg)
        .env("LITESTREAM_EXTENSION", so_path())
        .current_dir(s.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start datasette");
    let server = Killed(Some(server));

    let count = || {
        http_get(
            port,
            "/follower.json?sql=select+count(*)+from+t&_shape=arrays",
        )
        .and_then(|b| count_from_json(&b))
    };
    // Datasette answers a JSON query on the replica, and the answer grows while the primary
    // writes.
    let mut first = None;
    assert!(
        wait_until(WAIT, || {
            first = count();
            first.is_some()
        }),
        "datasette never answered a query on the read replica"
    );
    let first = first.unwrap();
    assert!(
        wait_until(WAIT, || count().is_some_and(|n| n > first)),
        "the replica served by datasette stayed at {first} rows while the primary wrote"
    );
    // The replica is followed through the VFS inside Datasette's process.
    let status = http_get(
        port,
        "/follower.json?sql=select+litestream_replica_status()&_shape=arrays",
    )
    .expect("litestream_replica_status() through datasette");
    assert!(status.contains(r#"\"following\":true"#), "{status}");

    std::fs::write(&stop, "").unwrap();
    let out = primary.wait();
    assert!(out.status.success(), "primary writer: {out:?}");
    let total = query_ids(&db, "SELECT count(*) FROM t;")[0];
    assert!(
        wait_until(WAIT, || count() == Some(total)),
        "datasette's replica did not reach the primary's {total} rows (last answer {:?})",
        count()
    );
    drop(server);
    assert_restores_to(&s, &replica, &db, "datasette");
}

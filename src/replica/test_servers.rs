//! Store emulators for the unit tests (Azurite, fake-gcs-server, …), each started once per test
//! process on a free loopback port through `scripts/serve-until-eof.sh`, which stops the server
//! when this process exits (it holds the script's stdin).
//!
//! A server that is not installed is a loud skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`
//! (set by CI) makes it a failure.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait for a server to accept connections (Azurite's Node start-up takes seconds on a
/// busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Server {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first of `candidates` that exists, else `name` on `PATH`.
pub fn find_tool(name: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Some(p.clone());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Reports a missing server: a printed skip locally, a failure when CI requires every server.
pub fn missing(what: &str, install: &str) {
    let msg = format!("{what} is not installed ({install}); its tests are SKIPPED");
    if std::env::var("LITESTREAM_REQUIRE_TEST_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{msg}, but LITESTREAM_REQUIRE_TEST_SERVERS=1");
    }
    let _ = writeln!(std::io::stderr(), "\n*** SKIP: {msg} ***\n");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts `program` with the arguments `args(port)` and waits until the port accepts.
pub fn spawn(program: &std::path::Path, args: &dyn Fn(u16) -> Vec<String>) -> Server {
    let port = free_port();
    let mut child = Command::new(repo_root().join("scripts/serve-until-eof.sh"))
        .arg(program)
        .args(args(port))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited at start-up: {status}", program.display());
        }
        assert!(
            start.elapsed() < START_TIMEOUT,
            "{} did not listen on port {port} in time",
            program.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stdin = child.stdin.take().expect("piped stdin");
    Server {
        port,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

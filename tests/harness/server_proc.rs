//! Starting a test server: the program runs under `scripts/serve-until-eof.sh`, which stops it
//! when the test binary exits (the script waits on a pipe this process holds), on a free
//! loopback port, and the caller waits until the port accepts connections.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::paths::workspace_root;

/// A running server; stopped when the test binary exits.
pub struct ServerProc {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `scripts/serve-until-eof.sh` with the program and arguments to run (add them, and any
/// environment, to the returned command), output discarded.
pub fn until_eof() -> Command {
    let mut cmd = Command::new(workspace_root().join("scripts/serve-until-eof.sh"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Spawns `cmd` (from [`until_eof`]) and waits up to `timeout` for `port` to accept; `what`
/// names the server in panics.
pub fn start(what: &str, mut cmd: Command, port: u16, timeout: Duration) -> ServerProc {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited at start-up: {s}");
        }
        assert!(
            started.elapsed() < timeout,
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stdin = child.stdin.take().expect("piped stdin");
    ServerProc {
        port,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

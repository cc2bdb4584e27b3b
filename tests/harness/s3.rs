//! An S3 server for the tests: moto 5.2.5 from the repo's `.venv` (installed by
//! `scripts/setup-test-env.sh`), started by `scripts/moto-server.py` with conditional writes
//! made atomic, on a loopback port chosen by the OS, one per test binary. It waits on its
//! stdin, a pipe this process holds, so it exits with the test binary.
//!
//! Credentials: moto accepts any; the tests use fixed, recognisable values
//! ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]) so that logs can be searched for them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::paths::workspace_root;

/// Access key id handed to every client in the S3 tests.
pub const ACCESS_KEY_ID: &str = "AKIATESTHARNESS0001";
/// Secret handed to every client in the S3 tests; must never appear in any log.
pub const SECRET_ACCESS_KEY: &str = "harness-secret-9f3c1d7e5b";
pub const REGION: &str = "us-east-1";

/// How long a raw request to moto may take (it answers in milliseconds on loopback).
const RAW_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct S3Server {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();

impl S3Server {
    /// The moto server of this test binary, started on first use.
    pub fn shared() -> &'static S3Server {
        SERVER.get_or_init(Self::start)
    }

    fn start() -> S3Server {
        let python = workspace_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup-test-env.sh (or `make test`) to install moto",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(workspace_root().join("scripts/moto-server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", python.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read moto's port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("moto did not print its port (is moto[s3]==5.2.5 installed?): {line:?}")
        });
        let stdin = child.stdin.take().expect("piped stdin");
        S3Server {
            port,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a new bucket with a unique name starting with `prefix`.
    pub fn new_bucket(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        let (status, body) = self.raw("PUT", &format!("/{name}"));
        assert!(status == 200, "create bucket {name}: HTTP {status}: {body}");
        name
    }

    /// Keys under `prefix` in `bucket` (one page of ListObjectsV2, enough for the tests).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self.raw(
            "GET",
            &format!("/{bucket}?list-type=2&max-keys=1000&prefix={prefix}"),
        );
        assert_eq!(status, 200, "list {bucket}/{prefix}: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// A tiny HTTP/1.1 request straight to moto (which does not check signatures).
    fn raw(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        s.set_read_timeout(Some(RAW_REQUEST_TIMEOUT))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send request to moto");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read moto's answer");
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, resp)
    }
}

/// `s3://bucket/path?endpoint=…&region=…` for `endpoint` (moto, or a proxy in front of it).
pub fn s3_url(bucket: &str, path: &str, endpoint: &str) -> String {
    format!("s3://{bucket}/{path}?endpoint={endpoint}&region={REGION}")
}

/// The environment that gives a child process the test credentials.
pub fn credential_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_REGION", REGION),
    ]
}

//! A moto S3 server for the unit tests: `scripts/moto-server.py` (moto from the repo's `.venv`,
//! which `scripts/setup-test-env.sh` installs, with conditional writes made atomic) on a free
//! loopback port chosen by the OS. It exits when this test process does: it waits on its
//! stdin, which is a pipe we hold.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use aws_sdk_s3::primitives::ByteStream;

use super::error_map::map_sdk;
use super::S3Replica;

struct Server {
    endpoint: String,
    // Held for the life of the test process; dropping the pipe stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-test-env.sh (or `make test`) to install moto",
        p.display()
    );
    p
}

fn start() -> Server {
    let mut child = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto from .venv (run scripts/setup-test-env.sh)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read moto port");
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("moto did not print its port: {line:?}"));
    let stdin = child.stdin.take().expect("piped stdin");
    Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

/// The endpoint of the shared moto server, started on first use.
pub fn endpoint() -> &'static str {
    &SERVER.get_or_init(start).endpoint
}

/// Stores raw bytes under `<prefix>/<level>/<name>` of `r`, bypassing the layout (the
/// conformance suite's foreign names).
pub(crate) fn plant(r: &S3Replica) -> impl Fn(u8, &str, &[u8]) + '_ {
    move |level, name, data| {
        let key = format!("{}{name}", r.level_prefix(level));
        let (bucket, data) = (r.settings().bucket.clone(), data.to_vec());
        r.run(&key.clone(), move |c| async move {
            c.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(ByteStream::from(data))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_sdk("PUT", key.clone(), &e))
        })
        .expect("plant");
    }
}

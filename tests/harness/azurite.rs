//! Azurite (npm `azurite@3.35.0`, installed into `.test-servers/npm` by
//! `scripts/setup-test-env.sh`) on a free loopback port, one per test binary, stopped when the
//! test binary exits (`scripts/serve-until-eof.sh` holds it on our stdin pipe).
//!
//! The harness talks to it with Python's standard library (Shared Key signing with `hmac`), so
//! that container setup and listings do not go through the code under test.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::paths::workspace_root;
use crate::procs::python;

/// Azurite's well-known development account and key (published by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's Node start-up takes seconds on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Azurite {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

fn binary() -> Option<PathBuf> {
    crate::paths::local_or_on_path(
        &workspace_root().join(".test-servers/npm/node_modules/.bin/azurite-blob"),
        "azurite-blob",
    )
}

impl Azurite {
    /// The server of this test binary, or `None` (with a printed skip) when Azurite is not
    /// installed and `LITESTREAM_REQUIRE_TEST_SERVERS` is not `1` (CI sets it: then it panics).
    pub fn shared() -> Option<&'static Azurite> {
        static SERVER: OnceLock<Option<Azurite>> = OnceLock::new();
        SERVER
            .get_or_init(|| match binary() {
                Some(bin) => Some(Self::start(&bin)),
                None => {
                    let msg = "Azurite is not installed (scripts/setup-test-env.sh installs npm \
                               azurite@3.35.0)";
                    crate::paths::missing_test_server(msg, "abs")
                }
            })
            .as_ref()
    }

    fn start(bin: &std::path::Path) -> Azurite {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(workspace_root().join("scripts/serve-until-eof.sh"))
            .arg(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("azurite exited at start-up: {s}");
            }
            assert!(start.elapsed() < START_TIMEOUT, "azurite did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let stdin = child.stdin.take().expect("piped stdin");
        Azurite {
            port,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1` for a server on `port` (Azurite or a proxy).
    pub fn endpoint_on(port: u16) -> String {
        format!("http://127.0.0.1:{port}/{ACCOUNT}")
    }

    /// Creates a new container with a unique name starting with `prefix`.
    pub fn new_container(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        let (status, body) = self.request("PUT", &name, "restype=container");
        assert_eq!(status, 201, "create container {name}: {body}");
        name
    }

    /// Every blob name under `prefix` in `container` (one page, enough for the tests).
    pub fn blobs(&self, container: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self.request(
            "GET",
            container,
            &format!("restype=container&comp=list&prefix={prefix}"),
        );
        assert_eq!(status, 200, "list {container}/{prefix}: {body}");
        body.split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next())
            .map(str::to_string)
            .collect()
    }

    /// A Shared Key signed request made by Python's standard library: (status, body).
    fn request(&self, method: &str, path: &str, query: &str) -> (u16, String) {
        let o = python(
            AZURE_REQUEST_PY,
            &[
                method,
                &self.port.to_string(),
                ACCOUNT,
                ACCOUNT_KEY,
                path,
                query,
            ],
            &[],
        );
        let (status, body) = o.stdout.split_once('\n').unwrap_or((&o.stdout, ""));
        (
            status
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("azure request helper failed: {o}")),
            body.to_string(),
        )
    }
}

/// Signs and sends one request (args: method port account key path query); prints the status
/// then the body.
const AZURE_REQUEST_PY: &str = r#"
import sys, hmac, hashlib, base64, urllib.request, urllib.error, email.utils, urllib.parse
if len(sys.argv) < 7:
    sys.exit(0)
method, port, account, key, path, query = sys.argv[1:7]
date = email.utils.formatdate(usegmt=True)
headers = {"x-ms-date": date, "x-ms-version": "2021-12-02"}
params = sorted((k.lower(), urllib.parse.unquote(v)) for k, v in
                (p.split("=", 1) for p in query.split("&") if p))
resource = "/%s/%s/%s" % (account, account, path) + "".join("\n%s:%s" % kv for kv in params)
canon = "".join("%s:%s\n" % (k, headers[k]) for k in sorted(headers))
ctype = "application/octet-stream" if method == "PUT" else ""
to_sign = method + "\n" * 5 + ctype + "\n" * 7 + canon + resource
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
headers["Authorization"] = "SharedKey %s:%s" % (account, sig.decode())
if ctype:
    headers["Content-Type"] = ctype
url = "http://127.0.0.1:%s/%s/%s?%s" % (port, account, path, query)
req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "PUT" else None)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;

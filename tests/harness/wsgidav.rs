//! WsgiDAV 4.4.0 on cheroot (`scripts/webdav-server.py`, from the repo's `.venv`, installed by
//! `scripts/setup-test-env.sh`) sharing a temporary directory, on a free loopback port, one per
//! test binary, stopped when the test binary exits (`scripts/serve-until-eof.sh`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::paths::workspace_root;
use crate::server_proc::{self, ServerProc};

pub const USER: &str = "replicator";
/// Must never appear in any log of ours.
pub const PASSWORD: &str = "harness-dav-4e0b2f";

/// WsgiDAV imports in about a second; generous for a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct WsgiDav {
    pub port: u16,
    /// The directory the server shares.
    pub root: PathBuf,
    _proc: ServerProc,
}

impl WsgiDav {
    /// The server of this test binary, or `None` (with a printed skip) when WsgiDAV is not
    /// installed and `LITESTREAM_REQUIRE_TEST_SERVERS` is not `1` (CI sets it: then it panics).
    pub fn shared() -> Option<&'static WsgiDav> {
        static SERVER: OnceLock<Option<WsgiDav>> = OnceLock::new();
        SERVER.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<WsgiDav> {
        let python = workspace_root().join(".venv/bin/python");
        let installed = python.is_file()
            && Command::new(&python)
                .args(["-c", "import wsgidav, cheroot"])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            let msg = "WsgiDAV is not installed (scripts/setup-test-env.sh installs PyPI wsgidav \
                       and cheroot into .venv)";
            return crate::paths::missing_test_server(msg, "webdav");
        }
        let root = std::env::temp_dir().join(format!("litestream-wsgidav-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the shared directory");
        let port = server_proc::free_port();
        let mut cmd = server_proc::until_eof();
        cmd.arg(&python)
            .arg(workspace_root().join("scripts/webdav-server.py"))
            .arg(&root)
            .args([USER, PASSWORD, &port.to_string()]);
        let proc = server_proc::start("the WebDAV server", cmd, port, START_TIMEOUT);
        Some(WsgiDav {
            port,
            root,
            _proc: proc,
        })
    }

    /// `http://127.0.0.1:PORT` for a server on `port` (WsgiDAV or a proxy in front of it).
    pub fn url_on(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// `webdav://USER:PASSWORD@127.0.0.1:PORT/path`.
    pub fn replica_url(&self, path: &str) -> String {
        format!("webdav://{USER}:{PASSWORD}@127.0.0.1:{}/{path}", self.port)
    }
}

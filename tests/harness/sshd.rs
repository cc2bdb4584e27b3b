//! OpenSSH's sshd (Debian `openssh-server`) serving SFTP on a free loopback port
//! (`scripts/sshd-test-server.sh`: generated host and client keys, key login for the current
//! user only), one per test binary, stopped when the test binary exits. Replicas are
//! directories under [`Sshd::root`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::paths::workspace_root;
use crate::server_proc::{self, ServerProc};

/// sshd starts in milliseconds (after generating two keys once); generous for a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Where Debian installs sshd.
const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub port: u16,
    /// Holds the keys (`client_ed25519`, `host_ed25519.pub`, `known_hosts`).
    pub keys: PathBuf,
    /// Replica directories go under here.
    pub root: PathBuf,
    _proc: ServerProc,
}

impl Sshd {
    /// The server of this test binary, or `None` (with a printed skip) when sshd is not
    /// installed and `LITESTREAM_REQUIRE_TEST_SERVERS` is not `1` (CI sets it: then it panics).
    pub fn shared() -> Option<&'static Sshd> {
        static SERVER: OnceLock<Option<Sshd>> = OnceLock::new();
        SERVER.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<Sshd> {
        if !Path::new(SSHD).is_file() {
            let msg = "OpenSSH sshd is not installed (apt-get install openssh-server; .ci/run \
                       installs it)";
            return crate::paths::missing_test_server(msg, "sftp");
        }
        let base = std::env::temp_dir().join(format!("litestream-sshd-it-{}", std::process::id()));
        let (keys, root) = (base.join("keys"), base.join("root"));
        std::fs::create_dir_all(&root).expect("replica root");
        let port = server_proc::free_port();
        let mut cmd = server_proc::until_eof();
        cmd.arg(workspace_root().join("scripts/sshd-test-server.sh"))
            .arg(&keys)
            .arg(port.to_string())
            .env("SSHD", SSHD);
        let proc = server_proc::start("sshd", cmd, port, START_TIMEOUT);
        Some(Sshd {
            port,
            keys,
            root,
            _proc: proc,
        })
    }

    /// The user the server lets in (the one running the tests).
    pub fn user() -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into())
    }

    /// The server's public key line, for `host-key`.
    pub fn host_key(&self) -> String {
        let line = std::fs::read_to_string(self.keys.join("host_ed25519.pub")).expect("host key");
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The client's private key, for `key-path`.
    pub fn key_path(&self) -> PathBuf {
        self.keys.join("client_ed25519")
    }
}

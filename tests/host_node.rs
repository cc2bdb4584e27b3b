//! Node with `better-sqlite3` (its own SQLite, 3.53): `loadExtension` into a first in-memory
//! database, then a plain `new Database(path)`. better-sqlite3 cannot name a VFS (no URI
//! filenames), so this only works because loading made `litestream` the default VFS
//! (`vfs.default: auto`).
//!
//! Needs: `node` (Debian/NodeSource `nodejs`, Node 20+), `scripts/setup-hosts.sh` (better-sqlite3
//! built into `.hosts/node`), the extension, both CLIs.

use std::process::Command;

use litestream_tests::hosts::{arg, host_source, hosts_dir, require, require_on_path, HostFixture};
use litestream_tests::*;

const ROWS: usize = 200;

#[test]
fn better_sqlite3_replicates_a_plain_open() {
    let node = require_on_path("node", "Node.js 20 or later (apt-get install nodejs)");
    let modules = hosts_dir().join("node/node_modules");
    require(
        modules.join("better-sqlite3/build/Release/better_sqlite3.node"),
        "better-sqlite3 (npm)",
    );
    let f = HostFixture::new("host-node");
    let mut cmd = Command::new(node);
    cmd.arg(host_source("node/write.js"))
        .arg(so_path())
        .arg(arg(&f.db))
        .arg(arg(&f.other))
        .arg(ROWS.to_string())
        .env("NODE_PATH", &modules);
    let r = f.run(cmd, "node better-sqlite3");
    f.assert_scenario(&r, "better-sqlite3", ROWS as i64 + 1);
}

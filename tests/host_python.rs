//! Python hosts with their own SQLite: `apsw` (bundled 3.54) and `pysqlite3-binary` (bundled
//! 3.51) load the extension with their own API, then open the configured database by its plain
//! path: loading made `litestream` the default VFS (`vfs.default: auto`).
//!
//! Needs: `scripts/setup-hosts.sh` (the venv `.hosts/venv`), the extension, both CLIs.

use std::process::Command;

use litestream_tests::hosts::{arg, host_source, hosts_dir, require, HostFixture};
use litestream_tests::*;

const ROWS: usize = 200;

fn venv_python() -> std::path::PathBuf {
    require(
        hosts_dir().join("venv/bin/python"),
        "the Python hosts' venv (apsw, pysqlite3-binary)",
    )
}

fn python_host(module: &str) {
    let f = HostFixture::new(&format!("host-{module}"));
    let mut cmd = Command::new(venv_python());
    cmd.arg(host_source("python/write.py"))
        .arg(module)
        .arg(so_path())
        .arg(arg(&f.db))
        .arg(arg(&f.other))
        .arg(ROWS.to_string());
    let r = f.run(cmd, module);
    f.assert_scenario(&r, module, ROWS as i64 + 1);
}

#[test]
fn apsw_bundled_sqlite_replicates_a_plain_open() {
    python_host("apsw");
}

#[test]
fn pysqlite3_bundled_sqlite_replicates_a_plain_open() {
    python_host("pysqlite3");
}

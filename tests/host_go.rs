//! Go with `database/sql` and `mattn/go-sqlite3` (Debian's package, linked to the system
//! SQLite), built by the test in GOPATH mode without the module proxy. Several goroutines
//! write. Loaded two ways: `SQLiteDriver{Extensions: …}` (a first in-memory connection loads
//! the extension, which makes `litestream` the default VFS), and the same binary with the plain
//! driver under `LD_PRELOAD`.
//!
//! Go exits without running C `atexit` handlers, so the program ships its last commit with
//! `PRAGMA litestream.checkpoint` before exiting (README: "Use it from your language").
//!
//! Needs: `go` (apt-get install golang-go), golang-github-mattn-go-sqlite3-dev, the extension,
//! both CLIs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use litestream_tests::hosts::{arg, host_source, hosts_dir, require, require_on_path, HostFixture};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

const ROWS_PER_WRITER: usize = 60;
const WRITERS: usize = 4;

/// Debian's Go source tree of the driver (GOPATH layout).
const MATTN_GOPATH: &str = "/usr/share/gocode";

/// Builds `tests/hosts/go/src/lshost` once per test process into `.hosts/go/lshost`.
fn lshost() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let go = require_on_path("go", "Go (apt-get install golang-go)");
        require(
            Path::new(MATTN_GOPATH).join("src/github.com/mattn/go-sqlite3"),
            "mattn/go-sqlite3 (apt-get install golang-github-mattn-go-sqlite3-dev)",
        );
        let out_dir = hosts_dir().join("go");
        std::fs::create_dir_all(&out_dir).expect("create .hosts/go");
        let bin = out_dir.join("lshost");
        let gopath = format!("{}:{MATTN_GOPATH}", host_source("go").display());
        let mut cmd = Command::new(go);
        cmd.args(["build", "-o"])
            .arg(&bin)
            .arg("lshost")
            .current_dir(host_source("go"))
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("GOPATH", gopath)
            .env("GOCACHE", out_dir.join("cache"));
        run_with_input(cmd, "go build lshost", b"").ok();
        bin
    })
}

fn go_host(mode: &str, preload: bool) {
    let bin = lshost();
    let f = HostFixture::new(&format!("host-go-{mode}"));
    let mut cmd = Command::new(bin);
    cmd.arg(mode)
        .arg(if preload { "-".into() } else { arg(&so_path()) })
        .arg(arg(&f.db))
        .arg(arg(&f.other))
        .arg(ROWS_PER_WRITER.to_string())
        .arg(WRITERS.to_string());
    if preload {
        cmd.env("LD_PRELOAD", so_path());
    }
    let r = f.run(cmd, &format!("go lshost {mode}"));
    let cp = r.get("final_checkpoint");
    assert!(cp.starts_with(r#"{"replicated_txid":""#), "{r}");
    f.assert_scenario(
        &r,
        &format!("go-{mode}"),
        (ROWS_PER_WRITER * WRITERS) as i64 + 1,
    );
    // Every goroutine's rows are there.
    let per_writer = query_ids(
        &f.db,
        "SELECT count(*) FROM t WHERE writer >= 0 GROUP BY writer ORDER BY writer;",
    );
    assert_eq!(per_writer, vec![ROWS_PER_WRITER as i64; WRITERS]);
}

#[test]
fn mattn_driver_extensions_replicate_a_plain_open() {
    go_host("extension", false);
}

#[test]
fn mattn_driver_under_ld_preload() {
    go_host("preload", true);
}

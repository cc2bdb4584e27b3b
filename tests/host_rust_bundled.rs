//! Rust with `rusqlite` + `bundled` (its own SQLite, statically linked: LD_PRELOAD cannot reach
//! it): `load_extension` into a first in-memory connection, then a plain `Connection::open`.
//! Also: loading again into a second connection keeps `litestream` the default VFS; after the
//! host unregisters it, new opens use the system VFS while open connections keep replicating;
//! loading once more registers it again.
//!
//! The host is the separate cargo project `tests/hosts/rust-bundled` (not a workspace member:
//! its libsqlite3-sys must not share features with the extension's), built by this test into
//! `.hosts/rust-target`.
//!
//! Needs: cargo and a C compiler (the bundled SQLite), the extension, both CLIs.

use std::path::PathBuf;
use std::process::Command;

use litestream_tests::hosts::{arg, host_source, hosts_dir, HostFixture};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

const ROWS: usize = 200;

fn build_host() -> PathBuf {
    let target = hosts_dir().join("rust-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--manifest-path"])
        .arg(host_source("rust-bundled/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // Not this workspace's build: none of its settings apply.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run_with_input(cmd, "cargo build (tests/hosts/rust-bundled)", b"").ok();
    target.join("release/litestream-host-rust-bundled")
}

#[test]
fn rusqlite_bundled_replicates_a_plain_open() {
    let bin = build_host();
    let f = HostFixture::new("host-rust-bundled");
    let mut cmd = Command::new(bin);
    cmd.arg(so_path())
        .arg(arg(&f.db))
        .arg(arg(&f.other))
        .arg(ROWS.to_string());
    let r = f.run(cmd, "rusqlite bundled host");
    assert_eq!(r.get("default_after_second_load"), "litestream", "{r}");
    assert_eq!(r.get("default_after_unregister"), "unix", "{r}");
    assert_eq!(r.get("default_after_reload"), "litestream", "{r}");
    // 'after the unregister' went through a connection opened before: it is replicated too
    // (the final sync at exit ships it).
    f.assert_scenario(&r, "rusqlite-bundled", ROWS as i64 + 2);
}

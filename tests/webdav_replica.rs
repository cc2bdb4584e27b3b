//! WebDAV (`webdav`) replicas end to end, against WsgiDAV on loopback (started by the
//! harness): the shared backend scenarios (`harness/backend_scenarios.rs`: VFS writes restore
//! with ours and the official binary, official `replicate` restores with ours, faults through
//! the proxy, no request while idle, the password never logged), and the `webdav://` URL form
//! with credentials in it, restored by both binaries.
//!
//! Needs: the extension, our CLI, the official binary and WsgiDAV (`make test` provides them;
//! without WsgiDAV the tests print a skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use std::path::Path;
use std::process::Command;

use litestream_tests::backend_scenarios::{self as scenario, BackendUnderTest};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(dav) = WsgiDav::shared() else { return };
    scenario::vfs_writes_restore_with_ours_and_official(dav);
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(dav) = WsgiDav::shared() else { return };
    scenario::official_replicate_then_our_restore(dav);
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(dav) = WsgiDav::shared() else { return };
    scenario::faults_never_fail_writes(dav);
}

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(dav) = WsgiDav::shared() else { return };
    scenario::an_idle_database_makes_no_requests(dav);
}

/// A replica written through the keys restores from its `webdav://USER:PASSWORD@…` URL with
/// both binaries, and ours never logs the password from the URL.
#[test]
fn the_url_form_with_credentials_restores_with_both_binaries() {
    let Some(dav) = WsgiDav::shared() else { return };
    let path = dav.fresh_location("url");
    let s = Scratch::new("webdav-url");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES ('via url');",
    )
    .ok();
    let cfg = scenario::write_config(dav, &s, &db, &path, dav.port, "100ms", "");
    let mut w = scenario::writer(dav, &vfs_uri(&db, None), &cfg, dav.port, &s.join("w.log"));
    w.exec("INSERT INTO t VALUES ('written')");
    assert!(scenario::wait_restore_equals(dav, &s, &cfg, &db));
    w.close();
    let url = dav.replica_url(&path);
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("{name}.db"));
        let mut cmd = Command::new(&bin);
        cmd.args(["restore", "-o"]).arg(&out).arg(&url);
        let o = run_with_input(cmd, &format!("{name} restore"), b"");
        assert!(o.success(), "{name} restore of the URL: {o}");
        if name == "ours" {
            scenario::assert_no_secret(dav, &o.stderr, "our restore of the URL");
        }
        assert_same_dump(&out, Path::new(&db), &format!("{name} restore of the URL"));
    }
}

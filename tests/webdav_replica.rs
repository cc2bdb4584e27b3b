//! WebDAV (`webdav`) replicas end to end, against WsgiDAV on loopback (started by the harness)
//! and, for the fault test, through the harness's fault-injecting proxy:
//! - writes through the VFS restore with our `litestream restore` and the official one;
//! - a replica written by the official `litestream replicate` restores with ours;
//! - a third of the requests failing (5xx, resets, stalls, slow and cut answers) never fails an
//!   application write, and the replica catches up once the faults stop;
//! - an idle database makes no request;
//! - the password never appears in our logs.
//!
//! Needs: the extension, our CLI, the official binary and WsgiDAV (`make test` provides them;
//! without WsgiDAV the tests print a skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestream_tests::procs::run_with_input;
use litestream_tests::wsgidav::{PASSWORD, USER};
use litestream_tests::*;

/// The environment variable the configs take the password from (`${…}` expansion).
const PASSWORD_VAR: &str = "TEST_DAV_PASSWORD";

/// A `litestream.yml` replicating `db` to `path` on the WebDAV server at `port`.
fn dav_config(
    s: &Scratch,
    db: &Path,
    path: &str,
    port: u16,
    sync: &str,
    settings: &str,
) -> PathBuf {
    s.write(
        format!("litestream-{:08x}.yml", fastrand::u32(..)),
        &format!(
            "{settings}dbs:\n  - path: {}\n    replica:\n      type: webdav\n      \
             webdav-url: {}\n      webdav-username: {USER}\n      \
             webdav-password: ${{{PASSWORD_VAR}}}\n      path: {path}\n      sync-interval: {sync}\n",
            db.display(),
            WsgiDav::url_on(port)
        ),
    )
}

#[track_caller]
fn assert_no_password(log: &str, what: &str) {
    assert!(
        !log.contains(PASSWORD),
        "{what}: the password appears in the log:\n{log}"
    );
}

fn restore_with(bin: &Path, url: &str, out: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-o"]).arg(out).arg(url);
    run_with_input(cmd, &format!("{} restore", bin.display()), b"")
}

#[track_caller]
fn assert_both_restore(s: &Scratch, url: &str, source: &Path, context: &str) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(&bin, url, &out);
        assert!(
            o.success() && out.is_file(),
            "{context}: {name} restore: {o}"
        );
        if name == "ours" {
            assert_no_password(&o.stderr, &format!("{context}: our restore"));
        }
        assert_integrity(&out, &format!("{context} ({name})"));
        assert_same_dump(&out, source, &format!("{context} ({name})"));
    }
}

fn wait_restore_equals(s: &Scratch, url: &str, source: &Path) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(&our_bin(), url, &out).success() && out.is_file() && dump(&out) == want
    })
}

fn writer(uri: &str, cfg: &Path, log: &Path) -> Session {
    let env: Vec<(&str, &Path)> = vec![
        (PASSWORD_VAR, Path::new(PASSWORD)),
        ("LOG_LEVEL", Path::new("debug")),
        ("LITESTREAM_CONFIG", cfg),
    ];
    Session::open(uri, 1, &env, log)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(dav) = WsgiDav::shared() else { return };
    let s = Scratch::new("dav-vfs");
    let db = s.join("app.db");
    let top = unique("vfs");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = dav_config(&s, &db, &format!("{top}/app.db"), dav.port, "100ms", "");
    let uri = vfs_uri(&db, None);
    let half = w.steps.len().div_ceil(2);
    for (i, part) in w.steps.chunks(half).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        let out = sqlite3(
            &format!("{}{body}\n", ext_prefix(&uri)),
            &[
                (PASSWORD_VAR, Path::new(PASSWORD)),
                ("LOG_LEVEL", Path::new("debug")),
                ("LITESTREAM_CONFIG", &cfg),
            ],
        );
        assert!(out.success(), "{}: session {i}: {out}", w.describe());
        assert_no_password(&out.stderr, "shell session");
    }
    let level0 = dav.root.join(&top).join("app.db/ltx/0");
    let names: Vec<String> = std::fs::read_dir(&level0)
        .unwrap_or_else(|e| panic!("layout: {} missing: {e}", level0.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("0000000000000001-")),
        "layout: want <path>/ltx/0/<min>-<max>.ltx, got {names:?}"
    );
    assert_both_restore(
        &s,
        &dav.replica_url(&format!("{top}/app.db")),
        &db,
        "vfs writes",
    );
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(dav) = WsgiDav::shared() else { return };
    let s = Scratch::new("dav-official");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 100);",
    )
    .ok();
    let top = unique("official");
    let url = dav.replica_url(&top);
    let mut rep = Replicator::with_url(&db, &url, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || dav
            .root
            .join(&top)
            .join("ltx/0")
            .is_dir()),
        "official replicate wrote nothing to the WebDAV server; log:\n{}",
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(&s, &url, &db),
        "our restore of the official webdav replica never equalled the source; log:\n{}",
        rep.log()
    );
    rep.stop();
    let out = s.join("final.db");
    restore_with(&our_bin(), &url, &out).ok();
    assert_same_dump(&out, &db, "official replicate → our restore");
}

fn proxy_port(proxy: &FaultProxy) -> u16 {
    proxy
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("proxy port")
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(dav) = WsgiDav::shared() else { return };
    let proxy = FaultProxy::start(dav.port, FaultConfig::none());
    let s = Scratch::new("dav-faults");
    let db = s.join("app.db");
    let top = unique("faults");
    let cfg = dav_config(&s, &db, &top, proxy_port(&proxy), "100ms", "");
    let mut w = writer(&vfs_uri(&db, None), &cfg, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    let FaultRun { injected, log } = write_through_faults(w, &proxy);
    assert!(injected >= MIN_FAULTS, "only {injected} faults injected");
    assert_no_password(&log, "writer");
    assert_both_restore(&s, &dav.replica_url(&top), &db, "after faults");
}

/// Compaction, snapshots and retention due every second or two: everything they do after the
/// last write is over within seconds.
const FAST_COMPACTION: &str = "levels: [{interval: 1s}, {interval: 2s}]\n\
    snapshot: {interval: 2s, retention: 10s}\nl0-retention: 1s\nl0-retention-check-interval: 500ms\n";

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(dav) = WsgiDav::shared() else { return };
    let proxy = FaultProxy::start(dav.port, FaultConfig::none());
    let s = Scratch::new("dav-idle");
    let db = s.join("app.db");
    let top = unique("idle");
    let cfg = dav_config(&s, &db, &top, proxy_port(&proxy), "1s", FAST_COMPACTION);
    let mut w = writer(&vfs_uri(&db, None), &cfg, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    w.exec("INSERT INTO t(v) VALUES (randomblob(100))");
    let url = dav.replica_url(&top);
    assert!(wait_restore_equals(&s, &url, &db), "initial replication");
    let mut seen = proxy.request_lines().len();
    let mut quiet_since = std::time::Instant::now();
    let settled = wait_until(Duration::from_secs(60), || {
        let n = proxy.request_lines().len();
        if n != seen {
            seen = n;
            quiet_since = std::time::Instant::now();
        }
        quiet_since.elapsed() >= Duration::from_secs(5)
    });
    assert!(settled, "requests never stopped after the last write");
    let from = proxy.request_lines().len();
    std::thread::sleep(Duration::from_secs(35)); // longer than the 30 s lease
    let idle = proxy.request_lines().split_off(from);
    assert!(idle.is_empty(), "requests while idle: {idle:?}");
    w.exec("INSERT INTO t(v) VALUES ('after idle')");
    assert!(wait_restore_equals(&s, &url, &db), "write after idle");
    let log = w.close();
    assert_no_password(&log, "writer");
}

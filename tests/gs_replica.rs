//! Google Cloud Storage (`gs`) replicas end to end, against fake-gcs-server on loopback
//! (started by the harness; clients find it through `STORAGE_EMULATOR_HOST`) and, for the fault
//! test, through the harness's fault-injecting proxy:
//! - writes through the VFS restore with our `litestream restore` and the official one;
//! - a replica written by the official `litestream replicate` restores with ours;
//! - a third of the requests failing (5xx, resets, stalls, slow and cut answers) never fails an
//!   application write, and the replica catches up once the faults stop;
//! - an idle database makes no request.
//!
//! Needs: the extension, our CLI, the official binary and fake-gcs-server (`make test` provides
//! them; without the emulator the tests print a skip, unless
//! `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestream_tests::procs::run_with_input;
use litestream_tests::*;

/// A `litestream.yml` replicating `db` to `gs://bucket/path` with top-level `settings`.
fn gs_config(
    s: &Scratch,
    db: &Path,
    bucket: &str,
    path: &str,
    sync: &str,
    settings: &str,
) -> PathBuf {
    s.write(
        format!("litestream-{:08x}.yml", fastrand::u32(..)),
        &format!(
            "{settings}dbs:\n  - path: {}\n    replica:\n      type: gs\n      bucket: {bucket}\n      \
             path: {path}\n      sync-interval: {sync}\n",
            db.display()
        ),
    )
}

/// `restore -o out gs://bucket/path` with `bin`, the emulator at `host`.
fn restore_with(bin: &Path, host: &str, url: &str, out: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-o"])
        .arg(out)
        .arg(url)
        .env("STORAGE_EMULATOR_HOST", host)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    run_with_input(cmd, &format!("{} restore {url}", bin.display()), b"")
}

#[track_caller]
fn assert_both_restore(s: &Scratch, host: &str, url: &str, source: &Path, context: &str) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(&bin, host, url, &out);
        assert!(
            o.success() && out.is_file(),
            "{context}: {name} restore: {o}"
        );
        assert_integrity(&out, &format!("{context} ({name})"));
        assert_same_dump(&out, source, &format!("{context} ({name})"));
    }
}

fn wait_restore_equals(s: &Scratch, host: &str, url: &str, source: &Path) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(&our_bin(), host, url, &out).success() && out.is_file() && dump(&out) == want
    })
}

fn writer(uri: &str, cfg: &Path, host: &str, log: &Path) -> Session {
    let env: Vec<(&str, &Path)> = vec![
        ("STORAGE_EMULATOR_HOST", Path::new(host)),
        ("LOG_LEVEL", Path::new("debug")),
        ("LITESTREAM_CONFIG", cfg),
    ];
    Session::open(uri, 1, &env, log)
}

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(gcs) = FakeGcs::shared() else { return };
    let bucket = gcs.new_bucket("vfs");
    let s = Scratch::new("gs-vfs");
    let db = s.join("app.db");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = gs_config(&s, &db, &bucket, "tenant/app.db", "100ms", "");
    let uri = vfs_uri(&db, None);
    let host = gcs.host();
    let half = w.steps.len().div_ceil(2);
    for (i, part) in w.steps.chunks(half).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        let out = sqlite3(
            &format!("{}{body}\n", ext_prefix(&uri)),
            &[
                ("STORAGE_EMULATOR_HOST", Path::new(&host)),
                ("LITESTREAM_CONFIG", &cfg),
            ],
        );
        assert!(out.success(), "{}: session {i}: {out}", w.describe());
    }
    let names = gcs.objects(&bucket, "tenant/app.db/");
    assert!(
        names
            .iter()
            .any(|k| k.starts_with("tenant/app.db/ltx/0/0000000000000001-")),
        "layout: want tenant/app.db/ltx/0/<min>-<max>.ltx, got {names:?}"
    );
    let url = format!("gs://{bucket}/tenant/app.db");
    assert_both_restore(&s, &host, &url, &db, "vfs writes");
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(gcs) = FakeGcs::shared() else { return };
    let bucket = gcs.new_bucket("official");
    let s = Scratch::new("gs-official");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 200);",
    )
    .ok();
    let host = gcs.host();
    let url = format!("gs://{bucket}/from-official");
    std::env::set_var("STORAGE_EMULATOR_HOST", &host);
    let mut rep = Replicator::with_url(&db, &url, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || !gcs
            .objects(&bucket, "from-official/")
            .is_empty()),
        "official replicate wrote nothing to fake-gcs-server; log:\n{}",
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(&s, &host, &url, &db),
        "our restore of the official gs replica never equalled the source; log:\n{}",
        rep.log()
    );
    rep.stop();
    let out = s.join("final.db");
    restore_with(&our_bin(), &host, &url, &out).ok();
    assert_same_dump(&out, &db, "official replicate → our restore");
}

fn proxy_host(proxy: &FaultProxy) -> String {
    proxy
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(gcs) = FakeGcs::shared() else { return };
    let bucket = gcs.new_bucket("faults");
    let proxy = FaultProxy::start(gcs.port, FaultConfig::none());
    let s = Scratch::new("gs-faults");
    let db = s.join("app.db");
    let cfg = gs_config(&s, &db, &bucket, "db", "100ms", "");
    let mut w = writer(
        &vfs_uri(&db, None),
        &cfg,
        &proxy_host(&proxy),
        &s.join("writer.log"),
    );
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    let FaultRun { injected, .. } = write_through_faults(w, &proxy);
    assert!(injected >= MIN_FAULTS, "only {injected} faults injected");
    assert_both_restore(
        &s,
        &gcs.host(),
        &format!("gs://{bucket}/db"),
        &db,
        "after faults",
    );
}

/// Compaction, snapshots and retention due every second or two: everything they do after the
/// last write is over within seconds.
const FAST_COMPACTION: &str = "levels: [{interval: 1s}, {interval: 2s}]\n\
    snapshot: {interval: 2s, retention: 10s}\nl0-retention: 1s\nl0-retention-check-interval: 500ms\n";

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(gcs) = FakeGcs::shared() else { return };
    let bucket = gcs.new_bucket("idle");
    let proxy = FaultProxy::start(gcs.port, FaultConfig::none());
    let s = Scratch::new("gs-idle");
    let db = s.join("app.db");
    let cfg = gs_config(&s, &db, &bucket, "db", "1s", FAST_COMPACTION);
    let mut w = writer(
        &vfs_uri(&db, None),
        &cfg,
        &proxy_host(&proxy),
        &s.join("writer.log"),
    );
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    w.exec("INSERT INTO t(v) VALUES (randomblob(100))");
    let url = format!("gs://{bucket}/db");
    assert!(
        wait_restore_equals(&s, &gcs.host(), &url, &db),
        "initial replication"
    );
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
    assert!(
        wait_restore_equals(&s, &gcs.host(), &url, &db),
        "write after idle"
    );
    w.close();
}

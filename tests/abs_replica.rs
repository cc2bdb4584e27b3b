//! Azure Blob Storage (`abs`) replicas end to end, against Azurite on loopback (started by the
//! harness) and, for the fault test, through the harness's fault-injecting proxy:
//! - writes through the VFS restore with our `litestream restore` and the official one;
//! - a replica written by the official `litestream replicate` restores with ours;
//! - a third of the requests failing (5xx, resets, stalls, slow and cut answers) never fails an
//!   application write, and the replica catches up once the faults stop;
//! - an idle database makes no request;
//! - the account key never appears in any log.
//!
//! Needs: the extension, our CLI, the official binary and Azurite (`make test` provides them;
//! without Azurite the tests print a skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestream_tests::azurite::{ACCOUNT, ACCOUNT_KEY};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

/// The environment variable the configs take the key from (`${…}` expansion).
const KEY_VAR: &str = "TEST_ABS_KEY";

/// A `litestream.yml` replicating `db` to `container`/`path` on Azurite at `port`.
fn abs_config(
    s: &Scratch,
    db: &Path,
    container: &str,
    path: &str,
    port: u16,
    sync: &str,
) -> PathBuf {
    abs_config_with(s, db, container, path, port, sync, "")
}

/// [`abs_config`] with top-level `settings` lines (compaction, retention) before `dbs:`.
fn abs_config_with(
    s: &Scratch,
    db: &Path,
    container: &str,
    path: &str,
    port: u16,
    sync: &str,
    settings: &str,
) -> PathBuf {
    s.write(
        format!("litestream-{:08x}.yml", fastrand::u32(..)),
        &format!(
            "{settings}dbs:\n  - path: {}\n    replica:\n      type: abs\n      account-name: {ACCOUNT}\n      \
             account-key: ${{{KEY_VAR}}}\n      bucket: {container}\n      path: {path}\n      \
             endpoint: {}\n      sync-interval: {sync}\n",
            db.display(),
            Azurite::endpoint_on(port)
        ),
    )
}

#[track_caller]
fn assert_no_key(log: &str, what: &str) {
    assert!(
        !log.contains(ACCOUNT_KEY),
        "{what}: the account key appears in the log:\n{log}"
    );
}

/// `restore -config cfg -o out db` with `bin`.
fn restore_with(bin: &Path, cfg: &Path, db: &Path, out: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db)
        .env(KEY_VAR, ACCOUNT_KEY);
    run_with_input(cmd, &format!("{} restore", bin.display()), b"")
}

/// Restores with both binaries and checks each copy equals `source`.
#[track_caller]
fn assert_both_restore(s: &Scratch, cfg: &Path, source: &Path, context: &str) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(&bin, cfg, source, &out);
        assert!(
            o.success() && out.is_file(),
            "{context}: {name} restore: {o}"
        );
        assert_no_key(&o.stderr, &format!("{context}: {name} restore"));
        assert_integrity(&out, &format!("{context} ({name})"));
        assert_same_dump(&out, source, &format!("{context} ({name})"));
    }
}

/// Our restore, polled until it equals `source` (an upload may still be in flight).
fn wait_restore_equals(s: &Scratch, cfg: &Path, source: &Path) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(&our_bin(), cfg, source, &out).success() && out.is_file() && dump(&out) == want
    })
}

fn writer(uri: &str, cfg: &Path, log: &Path) -> Session {
    let env: Vec<(&str, &Path)> = vec![
        (KEY_VAR, Path::new(ACCOUNT_KEY)),
        ("LOG_LEVEL", Path::new("debug")),
        ("LITESTREAM_CONFIG", cfg),
    ];
    Session::open(uri, 1, &env, log)
}

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(az) = Azurite::shared() else { return };
    let container = az.new_container("vfs");
    let s = Scratch::new("abs-vfs");
    let db = s.join("app.db");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = abs_config(&s, &db, &container, "tenant/app.db", az.port, "100ms");
    let uri = vfs_uri(&db, None);
    let half = w.steps.len().div_ceil(2);
    for (i, part) in w.steps.chunks(half).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        let key = Path::new(ACCOUNT_KEY);
        let out = sqlite3(
            &format!("{}{body}\n", ext_prefix(&uri)),
            &[
                (KEY_VAR, key),
                ("LOG_LEVEL", Path::new("debug")),
                ("LITESTREAM_CONFIG", &cfg),
            ],
        );
        assert!(out.success(), "{}: session {i}: {out}", w.describe());
        assert_no_key(&out.stderr, "shell session");
    }
    let blobs = az.blobs(&container, "tenant/app.db/");
    assert!(
        blobs
            .iter()
            .any(|k| k.starts_with("tenant/app.db/ltx/0/0000000000000001-")),
        "layout: want tenant/app.db/ltx/0/<min>-<max>.ltx, got {blobs:?}"
    );
    assert_both_restore(&s, &cfg, &db, "vfs writes");
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(az) = Azurite::shared() else { return };
    let container = az.new_container("official");
    let s = Scratch::new("abs-official");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 200);",
    )
    .ok();
    let cfg = abs_config(&s, &db, &container, "from-official", az.port, "100ms");
    std::env::set_var(KEY_VAR, ACCOUNT_KEY);
    let mut rep = Replicator::with_config(&cfg, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || !az
            .blobs(&container, "from-official/")
            .is_empty()),
        "official replicate wrote nothing to Azurite; log:\n{}",
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(&s, &cfg, &db),
        "our restore of the official abs replica never equalled the source; log:\n{}",
        rep.log()
    );
    let log = rep.stop();
    assert_no_key(&log, "official replicate");
    let out = s.join("final.db");
    restore_with(&our_bin(), &cfg, &db, &out).ok();
    assert_same_dump(&out, &db, "official replicate → our restore");
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(az) = Azurite::shared() else { return };
    let container = az.new_container("faults");
    let proxy = FaultProxy::start(az.port, FaultConfig::none());
    let proxy_port: u16 = proxy
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("proxy port");
    let s = Scratch::new("abs-faults");
    let db = s.join("app.db");
    let cfg = abs_config(&s, &db, &container, "db", proxy_port, "100ms");
    let mut w = writer(&vfs_uri(&db, None), &cfg, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    let FaultRun { injected, log } = write_through_faults(w, &proxy);
    assert!(injected >= MIN_FAULTS, "only {injected} faults injected");
    assert_no_key(&log, "writer");
    let direct = abs_config(&s, &db, &container, "db", az.port, "100ms");
    assert_both_restore(&s, &direct, &db, "after faults");
}

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(az) = Azurite::shared() else { return };
    let container = az.new_container("idle");
    let proxy = FaultProxy::start(az.port, FaultConfig::none());
    let proxy_port: u16 = proxy
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("proxy port");
    let s = Scratch::new("abs-idle");
    let db = s.join("app.db");
    let cfg = abs_config_with(&s, &db, &container, "db", proxy_port, "1s", FAST_COMPACTION);
    let mut w = writer(&vfs_uri(&db, None), &cfg, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    w.exec("INSERT INTO t(v) VALUES (randomblob(100))");
    let direct = abs_config(&s, &db, &container, "db", az.port, "100ms");
    assert!(wait_restore_equals(&s, &direct, &db), "initial replication");
    // Once the work after the last write is done (merges, snapshot, retention): nothing, for
    // longer than the 30 s lease lasts.
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
    std::thread::sleep(Duration::from_secs(35));
    let idle = proxy.request_lines().split_off(from);
    assert!(idle.is_empty(), "requests while idle: {idle:?}");
    w.exec("INSERT INTO t(v) VALUES ('after idle')");
    assert!(wait_restore_equals(&s, &direct, &db), "write after idle");
    let log = w.close();
    assert_no_key(&log, "writer");
}

/// Compaction, snapshots and retention due every second or two: everything they do after the
/// last write is over within seconds.
const FAST_COMPACTION: &str = "levels: [{interval: 1s}, {interval: 2s}]\n\
    snapshot: {interval: 2s, retention: 10s}\nl0-retention: 1s\nl0-retention-check-interval: 500ms\n";

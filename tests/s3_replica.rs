//! S3 replicas end to end, against moto on loopback (started by the harness) and, for the fault
//! tests, through the harness's fault-injecting proxy:
//! - the shared backend scenarios (`harness/backend_scenarios.rs`): writes through the VFS
//!   restore with ours and the official binary, the official `replicate` restores with ours,
//!   a third of the requests failing never fails a write;
//! - the staged backlog is bounded while the store is down;
//! - a database larger than a multipart part round-trips;
//! - steady writes make one L0 PUT per sync-interval and no LIST; an idle database none;
//! - the test credentials never appear in any log.
//!
//! Needs: the extension, our CLI, the official binary and moto (`make test` provides them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use litestream_tests::backend_scenarios as scenario;
use litestream_tests::procs::run_with_input;
use litestream_tests::s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use litestream_tests::*;

/// The credentials every client here uses, in this process's environment (children inherit
/// them): the official binary and our CLI read `AWS_*`.
fn set_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in credential_env() {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_CA_BUNDLE");
    });
}

/// A `litestream.yml` replicating `db` to `s3://bucket/path` at `endpoint`, with the
/// credentials given through `${…}` expansion of the extension's environment.
fn s3_config(
    s: &Scratch,
    db: &Path,
    bucket: &str,
    path: &str,
    endpoint: &str,
    sync: &str,
) -> PathBuf {
    s3_config_with(s, db, bucket, path, endpoint, sync, "")
}

/// [`s3_config`] with top-level `settings` lines (compaction, retention) before `dbs:`.
fn s3_config_with(
    s: &Scratch,
    db: &Path,
    bucket: &str,
    path: &str,
    endpoint: &str,
    sync: &str,
    settings: &str,
) -> PathBuf {
    s.write(
        "litestream.yml",
        &format!(
            "{settings}dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {bucket}\n      \
             path: {path}\n      endpoint: {endpoint}\n      region: {REGION}\n      \
             access-key-id: ${{TEST_S3_KEY_ID}}\n      secret-access-key: ${{TEST_S3_SECRET}}\n      \
             sync-interval: {sync}\n",
            db.display()
        ),
    )
}

/// Panics if `log` shows a credential.
#[track_caller]
fn assert_no_credentials(log: &str, what: &str) {
    assert!(
        !log.contains(SECRET_ACCESS_KEY) && !log.contains(ACCESS_KEY_ID),
        "{what}: a credential appears in the log:\n{log}"
    );
}

fn restore_with(bin: &Path, url: &str, out: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-o", &out.to_string_lossy(), url])
        .env_remove("AWS_CA_BUNDLE");
    run_with_input(cmd, &format!("{} restore {url}", bin.display()), b"")
}

/// Restores `url` with both binaries and checks each copy equals `source`.
#[track_caller]
fn assert_both_restore(s: &Scratch, url: &str, source: &Path, context: &str) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(&bin, url, &out);
        assert!(
            o.success() && out.is_file(),
            "{context}: {name} restore: {o}"
        );
        assert_no_credentials(&o.stderr, &format!("{context}: {name} restore"));
        assert_integrity(&out, &format!("{context} ({name})"));
        assert_same_dump(&out, source, &format!("{context} ({name})"));
    }
}

/// Our restore of `url`, polled until it equals `source` (an upload may still be in flight).
fn wait_restore_equals(s: &Scratch, url: &str, source: &Path) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(&our_bin(), url, &out).success() && out.is_file() && dump(&out) == want
    })
}

const SHELL_ENV: [(&str, &str); 3] = [
    ("TEST_S3_KEY_ID", ACCESS_KEY_ID),
    ("TEST_S3_SECRET", SECRET_ACCESS_KEY),
    ("LOG_LEVEL", "debug"),
];

fn shell_with_config(uri: &str, cfg: &Path, body: &str) -> Output {
    let mut env: Vec<(&str, &Path)> = SHELL_ENV.iter().map(|(k, v)| (*k, Path::new(*v))).collect();
    env.push(("LITESTREAM_CONFIG", cfg));
    sqlite3(&format!("{}{body}\n", ext_prefix(uri)), &env)
}

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    set_credentials();
    scenario::vfs_writes_restore_with_ours_and_official(S3Server::shared());
}

#[test]
fn official_replicate_then_our_restore() {
    set_credentials();
    scenario::official_replicate_then_our_restore(S3Server::shared());
}

/// A Python process (Debian's python3) writing through the extension, one statement per line
/// of its stdin, answering `ok` or `error …` per statement.
/// A long-running writer through the extension with the S3 configuration `cfg` (and `extra`
/// environment); its log goes to `log`.
fn writer(uri: &str, cfg: &Path, log: &Path, extra: &[(&str, &str)]) -> Session {
    let mut env: Vec<(&str, &Path)> = SHELL_ENV
        .iter()
        .chain(extra)
        .map(|(k, v)| (*k, Path::new(*v)))
        .collect();
    env.push(("LITESTREAM_CONFIG", cfg));
    Session::open(uri, 1, &env, log)
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    set_credentials();
    scenario::faults_never_fail_writes(S3Server::shared());
}

#[test]
fn staged_backlog_is_bounded_while_the_store_is_down() {
    set_credentials();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("bound");
    let proxy = FaultProxy::start(srv.port, FaultConfig::none());
    let s = Scratch::new("s3-bound");
    let db = s.join("app.db");
    let cfg = s3_config(&s, &db, &bucket, "db", &proxy.endpoint(), "0");
    let mut w = writer(
        &vfs_uri(&db, None),
        &cfg,
        &s.join("writer.log"),
        &[("LITESTREAM_MAX_STAGED_BYTES", "64KiB")],
    );
    w.exec(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);\
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) \
         INSERT INTO t(v) SELECT randomblob(3000) FROM n",
    );
    let url = s3_url(&bucket, "db", &srv.endpoint());
    assert!(wait_restore_equals(&s, &url, &db), "initial replication");
    proxy.set(FaultConfig::failing(1.0, &[Fault::ServerError]));
    // Each transaction rewrites the whole table; every failed retry seals the newest rewrites
    // into another L0 file (~30 KB) that waits in the meta directory. Keep writing until those
    // pass the bound (twice the ~45 KB database) and the backlog is dropped. Without the bound
    // they would stay until the store is back.
    let meta = s.join(".app.db-liblitestream");
    let log_path = s.join("writer.log");
    let dropped = wait_until(Duration::from_secs(90), || {
        w.exec("UPDATE t SET v = randomblob(3000)");
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("dropping the staged backlog")
    });
    assert!(
        dropped,
        "the bound was never enforced; staged {} bytes",
        dir_size(&meta)
    );
    assert!(
        wait_until(Duration::from_secs(60), || dir_size(&meta) < 256 * 1024),
        "staged data stayed at {} bytes while the store was down",
        dir_size(&meta)
    );
    proxy.set(FaultConfig::none());
    w.exec("INSERT INTO t(v) VALUES ('store is back')");
    let log = w.close();
    assert!(
        log.contains("dropping the staged backlog"),
        "the bound was never enforced; log:\n{log}"
    );
    assert_no_credentials(&log, "writer");
    assert_both_restore(&s, &url, &db, "after the outage");
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn database_larger_than_a_multipart_part_round_trips() {
    set_credentials();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("large");
    let s = Scratch::new("s3-large");
    let db = s.join("app.db");
    let cfg = s3_config(&s, &db, &bucket, "big", &srv.endpoint(), "1s");
    // ~12 MiB of incompressible rows in one transaction: one L0 file of three 5 MiB parts.
    let body = "PRAGMA journal_mode=WAL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);\n\
                INSERT INTO t(v) SELECT randomblob(8000) FROM generate_series(1, 1500);\n\
                UPDATE t SET v = randomblob(10) WHERE id % 100 = 0;";
    let out = shell_with_config(&vfs_uri(&db, None), &cfg, body);
    assert!(out.success(), "{out}");
    assert_both_restore(
        &s,
        &s3_url(&bucket, "big", &srv.endpoint()),
        &db,
        "large database",
    );
}

/// Compaction that runs once at start-up and then not for a day: the write path alone.
const SLOW_COMPACTION: &str =
    "levels: [{interval: 24h}]\nsnapshot: {interval: 24h, retention: 24h}\n\
    l0-retention-check-interval: 24h\n";
/// Compaction, snapshots and retention due every second or two: everything they do after the
/// last write is over within seconds.
const FAST_COMPACTION: &str = "levels: [{interval: 1s}, {interval: 2s}]\n\
    snapshot: {interval: 2s, retention: 10s}\nl0-retention: 1s\nl0-retention-check-interval: 500ms\n";

/// About 10 commits per second for 6 s: the requests the proxy saw meanwhile, and how long it
/// took.
fn write_steadily(w: &mut Session, proxy: &FaultProxy) -> (Vec<String>, Duration) {
    let from = proxy.request_lines().len();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        w.exec("INSERT INTO t(v) VALUES (randomblob(100))");
        std::thread::sleep(Duration::from_millis(100));
    }
    (requests_since(proxy, from), started.elapsed())
}

/// The requests the proxy saw since `from` (an index into its request lines).
fn requests_since(proxy: &FaultProxy, from: usize) -> Vec<String> {
    proxy.request_lines().split_off(from)
}

/// Scope "Cost": steady writes make at most one L0 PUT per `sync-interval` and no LIST, and
/// merges read the L0 files from local copies; an idle database makes no request at all (due compaction jobs with nothing new are skipped, the
/// lease is not renewed), not even when its lease expires; a write after that replicates.
#[test]
fn steady_writes_put_once_per_interval_and_an_idle_database_makes_no_requests() {
    set_credentials();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("cost");
    let proxy = FaultProxy::start(srv.port, FaultConfig::none());
    let s = Scratch::new("s3-cost");
    let db = s.join("app.db");
    let uri = vfs_uri(&db, None);
    let url = s3_url(&bucket, "db", &srv.endpoint());
    let l0_put = format!("PUT /{bucket}/db/0000/");

    // A writer at sync-interval 1s with the compaction `settings`, logging to `log`.
    let start = |settings: &str, log: &str| {
        let cfg = s3_config_with(&s, &db, &bucket, "db", &proxy.endpoint(), "1s", settings);
        writer(&uri, &cfg, &s.join(log), &[])
    };

    // Steady writes, about 10 commits per second for 6 s.
    let mut w = start(SLOW_COMPACTION, "steady.log");
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    assert!(wait_restore_equals(&s, &url, &db), "first write");
    std::thread::sleep(Duration::from_secs(2)); // the start-up compaction round
    let (window, elapsed) = write_steadily(&mut w, &proxy);
    let puts = window.iter().filter(|l| l.starts_with(&l0_put)).count();
    let lists: Vec<&String> = window.iter().filter(|l| l.contains("list-type")).collect();
    let other: Vec<&String> = window
        .iter()
        .filter(|l| !l.starts_with(&l0_put) && !l.contains("/db/lease.json"))
        .collect();
    eprintln!(
        "steady: {} requests in {elapsed:?}: {puts} L0 PUTs; the rest: {:?}",
        window.len(),
        window
            .iter()
            .filter(|l| !l.starts_with(&l0_put))
            .collect::<Vec<_>>()
    );
    assert!(
        (puts as f64) <= elapsed.as_secs_f64().ceil() + 1.0,
        "{puts} L0 PUTs in {elapsed:?} at sync-interval 1s"
    );
    assert!(lists.is_empty(), "LIST on the write path: {lists:?}");
    assert!(
        other.is_empty(),
        "unexpected requests while writing: {other:?}"
    );
    assert!(wait_restore_equals(&s, &url, &db), "steady writes");
    w.close();

    // Steady writes with merges and snapshots every second or two: they read the L0 files
    // from the copies this process uploaded, never from the store. (The first round of a new
    // process downloads what earlier processes uploaded; the window starts after it.)
    let mut w = start(FAST_COMPACTION, "merging.log");
    w.exec("INSERT INTO t(v) VALUES ('merging')");
    assert!(wait_restore_equals(&s, &url, &db), "write before merging");
    std::thread::sleep(Duration::from_secs(3));
    let (window, _) = write_steadily(&mut w, &proxy);
    let l0_gets: Vec<&String> = window
        .iter()
        .filter(|l| l.starts_with(&format!("GET /{bucket}/db/0000/")))
        .collect();
    let merged = window
        .iter()
        .filter(|l| l.starts_with(&format!("PUT /{bucket}/db/0001/")))
        .count();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for l in &window {
        let what: String = l.split('/').take(4).collect::<Vec<_>>().join("/");
        *kinds
            .entry(what.split('?').next().unwrap_or("").to_string())
            .or_default() += 1;
    }
    eprintln!("merging: {} requests: {kinds:?}", window.len());
    assert!(merged >= 3, "L1 merges ran: {window:?}");
    assert!(
        l0_gets.is_empty(),
        "merges downloaded L0 files: {l0_gets:?}"
    );
    assert!(wait_restore_equals(&s, &url, &db), "merging");
    w.close();

    // Idle, with compaction due every second: once its work after the last write is done,
    // nothing, for longer than the lease lasts.
    let mut w = start(FAST_COMPACTION, "idle.log");
    w.exec("INSERT INTO t(v) VALUES ('before idle')");
    assert!(wait_restore_equals(&s, &url, &db), "write before idle");
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
    assert!(
        settled,
        "requests never stopped after the last write: {:?}",
        requests_since(&proxy, proxy.request_lines().len().saturating_sub(20))
    );
    let from = proxy.request_lines().len();
    std::thread::sleep(Duration::from_secs(35)); // longer than the 30 s lease
    let idle = requests_since(&proxy, from);
    assert!(idle.is_empty(), "requests while idle: {idle:?}");

    // The lease lapsed: the next write takes it again and replicates.
    w.exec("INSERT INTO t(v) VALUES ('after idle')");
    assert!(
        wait_restore_equals(&s, &url, &db),
        "write after the lease lapsed"
    );
    let log = w.close();
    assert_no_credentials(&log, "writer");
    assert_both_restore(&s, &url, &db, "after idle");
}

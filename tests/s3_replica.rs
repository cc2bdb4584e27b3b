//! S3 replicas end to end, against moto on loopback (started by the harness) and, for the fault
//! tests, through the harness's fault-injecting proxy:
//! - writes through the VFS restore with our `litestream restore` and the official one;
//! - a replica written by the official `litestream replicate` restores with ours;
//! - a third of the requests failing (5xx, resets, stalls, slow and cut answers) never fails an
//!   application write, and the replica catches up once the faults stop;
//! - the staged backlog is bounded while the store is down;
//! - a database larger than a multipart part round-trips;
//! - the test credentials never appear in any log.
//!
//! Needs: the extension, our CLI, the official binary and moto (`make test` provides them).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

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
    s.write(
        "litestream.yml",
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {bucket}\n      \
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
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("vfs");
    let s = Scratch::new("s3-vfs");
    let db = s.join("app.db");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = s3_config(&s, &db, &bucket, "tenant/app.db", &srv.endpoint(), "100ms");
    let uri = vfs_uri(&db, None);
    let half = w.steps.len().div_ceil(2);
    for (i, part) in w.steps.chunks(half).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        let out = shell_with_config(&uri, &cfg, &body);
        assert!(out.success(), "{}: session {i}: {out}", w.describe());
        assert_no_credentials(&out.stderr, "shell session");
    }
    let keys = srv.keys(&bucket, "tenant/app.db/");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("tenant/app.db/0000/0000000000000001-")),
        "layout: want tenant/app.db/0000/<min>-<max>.ltx, got {keys:?}"
    );
    let url = s3_url(&bucket, "tenant/app.db", &srv.endpoint());
    assert_both_restore(&s, &url, &db, "vfs writes");
}

#[test]
fn official_replicate_then_our_restore() {
    set_credentials();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("official");
    let s = Scratch::new("s3-official");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 200);",
    )
    .ok();
    let url = s3_url(&bucket, "from-official", &srv.endpoint());
    let mut rep = Replicator::with_url(&db, &url, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || !srv
            .keys(&bucket, "from-official/")
            .is_empty()),
        "official replicate wrote nothing to S3; log:\n{}",
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(&s, &url, &db),
        "our restore of the official S3 replica never equalled the source; log:\n{}",
        rep.log()
    );
    rep.stop();
    let out = s.join("final.db");
    restore_with(&our_bin(), &url, &out).ok();
    assert_same_dump(&out, &db, "official replicate → our restore");
}

/// A Python process (Debian's python3) writing through the extension, one statement per line
/// of its stdin, answering `ok` or `error …` per statement.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Its stderr (the extension's log) goes to a file: a pipe nobody reads would fill up and
    /// block the writer.
    log: PathBuf,
}

const WRITER: &str = r#"
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
conn = sqlite3.connect(ARGS[0], uri=True, isolation_level=None, timeout=20)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        conn.executescript(line)
        print("ok", flush=True)
    except Exception as e:
        print("error", e, flush=True)
conn.close()
"#;

impl Writer {
    fn start(uri: &str, cfg: &Path, log: PathBuf, extra_env: &[(&str, &str)]) -> Writer {
        let mut env: Vec<(&str, &Path)> =
            SHELL_ENV.iter().map(|(k, v)| (*k, Path::new(*v))).collect();
        env.push(("LITESTREAM_CONFIG", cfg));
        for (k, v) in extra_env {
            env.push((k, Path::new(*v)));
        }
        let mut cmd = python_command(WRITER, &[uri], &env);
        let err = std::fs::File::create(&log).expect("create writer log");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().expect("start python writer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Writer {
            child,
            stdin,
            stdout,
            log,
        }
    }

    /// Runs `sql`; panics if the application saw an error.
    #[track_caller]
    fn exec(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().expect("writer running");
        writeln!(stdin, "{sql}").expect("send to writer");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read writer");
        assert_eq!(line.trim(), "ok", "application write failed: {sql}");
    }

    /// Closes stdin (the writer closes its connection and exits, running the exit flush) and
    /// returns its stderr.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for writer");
        let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "writer failed: {status}\n{stderr}");
        stderr
    }
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    set_credentials();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("faults");
    let proxy = FaultProxy::start(srv.port, FaultConfig::none());
    let s = Scratch::new("s3-faults");
    let db = s.join("app.db");
    let cfg = s3_config(&s, &db, &bucket, "db", &proxy.endpoint(), "100ms");
    let mut w = Writer::start(&vfs_uri(&db, None), &cfg, s.join("writer.log"), &[]);
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    let mut faults = FaultConfig::failing(1.0 / 3.0, &Fault::ALL);
    faults.stall = Duration::from_secs(2);
    proxy.set(faults);
    for i in 0..150 {
        w.exec(&format!(
            "INSERT INTO t(v) VALUES (randomblob({})); UPDATE t SET v = randomblob(200) WHERE id = {}",
            100 + (i * 397) % 6000,
            1 + i / 2
        ));
        std::thread::sleep(Duration::from_millis(40));
    }
    let injected = proxy.faults();
    proxy.set(FaultConfig::none());
    w.exec("INSERT INTO t(v) VALUES ('after the faults')");
    let log = w.finish();
    // The SDK retries most faults itself; the rest show up as "sync failed; will retry".
    eprintln!(
        "proxy: {injected} faults in {} requests; uploader retries: {}",
        proxy.requests(),
        log.matches("will retry").count()
    );
    assert!(
        injected >= 5,
        "the proxy injected only {injected} faults in {} requests",
        proxy.requests()
    );
    assert_no_credentials(&log, "writer");
    assert_both_restore(
        &s,
        &s3_url(&bucket, "db", &srv.endpoint()),
        &db,
        "after faults",
    );
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
    let mut w = Writer::start(
        &vfs_uri(&db, None),
        &cfg,
        s.join("writer.log"),
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
    // Each transaction rewrites the whole table: the backlog outgrows twice the database fast.
    for _ in 0..40 {
        w.exec("UPDATE t SET v = randomblob(3000)");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 40 rewrites of ~30 KB stage > 1 MB; once the next retry fails, the bound (twice the
    // ~45 KB database) drops it. Without the bound it would stay until the store is back.
    let meta = s.join(".app.db-litestream");
    assert!(
        wait_until(Duration::from_secs(60), || dir_size(&meta) < 256 * 1024),
        "staged data stayed at {} bytes while the store was down",
        dir_size(&meta)
    );
    proxy.set(FaultConfig::none());
    w.exec("INSERT INTO t(v) VALUES ('store is back')");
    let log = w.finish();
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

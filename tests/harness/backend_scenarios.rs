//! The scenarios every replica backend's integration test runs, once per backend: each function
//! takes a [`BackendUnderTest`] (a server started by the harness, and how to reach a replica on
//! it) and checks one thing end to end. A backend's own test file calls them and keeps only
//! what is specific to it.
//!
//! - [`vfs_writes_restore_with_ours_and_official`]: writes through the VFS land in the official
//!   layout and restore with our `litestream restore` and the official 0.5.17 one;
//! - [`official_replicate_then_our_restore`]: a replica the official `replicate` writes
//!   restores with ours;
//! - [`faults_never_fail_writes`] (HTTP stores): a third of the requests failing through the
//!   fault proxy never fails an application write, and the replica catches up;
//! - [`an_idle_database_makes_no_requests`] (HTTP stores): nothing once the work after the last
//!   write is done, for longer than the lease lasts.
//!
//! Every one also checks that the backend's secrets never appear in our logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::run_with_input;
use crate::*;

/// One test server of a replica type and how a replica on it is configured.
pub trait BackendUnderTest {
    /// The replica type (`abs`, `sftp`, …, also used to name scratch directories) and the
    /// port the server listens on.
    fn server(&self) -> (&'static str, u16);
    fn name(&self) -> &'static str {
        self.server().0
    }
    fn port(&self) -> u16 {
        self.server().1
    }
    /// A new, empty replica location on the server (a container, bucket or directory with a
    /// path in it), named after `tag`.
    fn fresh_location(&self, tag: &str) -> String;
    /// The lines of a `replica:` block (6-space indent, each ending in `\n`, without
    /// `sync-interval`) for `location`, reached through `port` (the server's or a proxy's).
    /// Secrets are `${VAR}` references to variables of [`env`].
    fn replica_keys(&self, location: &str, port: u16) -> String;
    /// The names stored under `location`, relative to the store's root.
    fn objects(&self, location: &str) -> Vec<String>;
    /// The secret the configuration takes from the environment: (variable, value).
    fn secret(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// More environment variables (emulator hosts, SDK credentials) when the store is reached
    /// through `port`.
    fn extra_env(&self, _port: u16) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What [`Self::objects`] names start with before the level directories (`tenant/app.db/`).
    fn level_root(&self) -> &'static str {
        ""
    }
    /// The level 0 directory in the official layout of this type.
    fn level0_dir(&self) -> &'static str {
        "ltx/0"
    }
    /// Values that must never appear in our logs.
    fn secrets(&self) -> Vec<String> {
        self.secret()
            .map(|(_, v)| vec![v.to_string()])
            .unwrap_or_default()
    }
}

/// Environment variables every process of a scenario gets, the store reached through `port`.
pub fn env(b: &dyn BackendUnderTest, port: u16) -> Vec<(String, String)> {
    let mut vars = b.extra_env(port);
    if let Some((k, v)) = b.secret() {
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}

/// The name the first L0 file written to a location starts with, in the official layout.
pub fn first_l0_prefix(b: &dyn BackendUnderTest) -> String {
    format!("{}{}/0000000000000001-", b.level_root(), b.level0_dir())
}

/// Compaction, snapshots and retention due every second or two: everything they do after the
/// last write is over within seconds.
pub const FAST_COMPACTION: &str = "levels: [{interval: 1s}, {interval: 2s}]\n\
    snapshot: {interval: 2s, retention: 10s}\nl0-retention: 1s\nl0-retention-check-interval: 500ms\n";

/// Writes a `litestream.yml` replicating `db` to `location` through `port`, with top-level
/// `settings` lines before `dbs:`.
pub fn write_config(
    b: &dyn BackendUnderTest,
    s: &Scratch,
    db: &Path,
    location: &str,
    port: u16,
    sync: &str,
    settings: &str,
) -> PathBuf {
    s.write(
        format!("litestream-{:08x}.yml", fastrand::u32(..)),
        &format!(
            "{settings}dbs:\n  - path: {}\n    replica:\n{}      sync-interval: {sync}\n",
            db.display(),
            b.replica_keys(location, port)
        ),
    )
}

/// Panics if `log` shows one of the backend's secrets.
#[track_caller]
pub fn assert_no_secret(b: &dyn BackendUnderTest, log: &str, what: &str) {
    for secret in b.secrets() {
        assert!(
            !log.contains(&secret),
            "{}: {what}: a secret appears in the log:\n{log}",
            b.name()
        );
    }
}

/// `restore -config cfg -o out db` with `bin` (ours or the official one), the store reached
/// directly.
pub fn restore_with(
    b: &dyn BackendUnderTest,
    bin: &Path,
    cfg: &Path,
    db: &Path,
    out: &Path,
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db)
        .env_remove("AWS_CA_BUNDLE");
    for (k, v) in env(b, b.port()) {
        cmd.env(k, v);
    }
    run_with_input(cmd, &format!("{} restore", bin.display()), b"")
}

/// Restores with both binaries and checks each copy equals `source`.
#[track_caller]
pub fn assert_both_restore(
    b: &dyn BackendUnderTest,
    s: &Scratch,
    cfg: &Path,
    source: &Path,
    context: &str,
) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(b, &bin, cfg, source, &out);
        assert!(
            o.success() && out.is_file(),
            "{}: {context}: {name} restore: {o}",
            b.name()
        );
        if name == "ours" {
            assert_no_secret(b, &o.stderr, &format!("{context}: our restore"));
        }
        assert_integrity(&out, &format!("{}: {context} ({name})", b.name()));
        assert_same_dump(&out, source, &format!("{}: {context} ({name})", b.name()));
    }
}

/// Our restore, polled until it equals `source` (an upload may still be in flight).
pub fn wait_restore_equals(
    b: &dyn BackendUnderTest,
    s: &Scratch,
    cfg: &Path,
    source: &Path,
) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(b, &our_bin(), cfg, source, &out).success()
            && out.is_file()
            && dump(&out) == want
    })
}

/// A long-running writer through the extension with the configuration `cfg`, the store
/// reached through `port`; its log goes to `log`.
pub fn writer(b: &dyn BackendUnderTest, uri: &str, cfg: &Path, port: u16, log: &Path) -> Session {
    let vars = env(b, port);
    let mut env: Vec<(&str, &Path)> = vars
        .iter()
        .map(|(k, v)| (k.as_str(), Path::new(v.as_str())))
        .collect();
    env.push(("LOG_LEVEL", Path::new("debug")));
    env.push(("LITESTREAM_CONFIG", cfg));
    Session::open(uri, 1, &env, log)
}

/// A random workload written through the VFS in two shell sessions lands in the official
/// layout and restores with both binaries.
pub fn vfs_writes_restore_with_ours_and_official(b: &dyn BackendUnderTest) {
    let location = b.fresh_location("vfs");
    let s = Scratch::new(&format!("{}-vfs", b.name()));
    let db = s.join("app.db");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = write_config(b, &s, &db, &location, b.port(), "100ms", "");
    let uri = vfs_uri(&db, None);
    let vars = env(b, b.port());
    let half = w.steps.len().div_ceil(2);
    for (i, part) in w.steps.chunks(half).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        let mut env: Vec<(&str, &Path)> = vars
            .iter()
            .map(|(k, v)| (k.as_str(), Path::new(v.as_str())))
            .collect();
        env.push(("LOG_LEVEL", Path::new("debug")));
        env.push(("LITESTREAM_CONFIG", &cfg));
        let out = sqlite3(&format!("{}{body}\n", ext_prefix(&uri)), &env);
        assert!(
            out.success(),
            "{}: {}: session {i}: {out}",
            b.name(),
            w.describe()
        );
        assert_no_secret(b, &out.stderr, "shell session");
    }
    let names = b.objects(&location);
    let want = first_l0_prefix(b);
    assert!(
        names.iter().any(|n| n.starts_with(&want)),
        "{}: layout: want {want}…, got {names:?}",
        b.name()
    );
    assert_both_restore(b, &s, &cfg, &db, "vfs writes");
}

/// The official `litestream replicate` writes a replica, with writes during replication; our
/// restore reaches the same database.
pub fn official_replicate_then_our_restore(b: &dyn BackendUnderTest) {
    let location = b.fresh_location("official");
    let s = Scratch::new(&format!("{}-official", b.name()));
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 100);",
    )
    .ok();
    let cfg = write_config(b, &s, &db, &location, b.port(), "100ms", "");
    // The official binary inherits this process's environment.
    for (k, v) in env(b, b.port()) {
        std::env::set_var(k, v);
    }
    std::env::remove_var("AWS_CA_BUNDLE");
    let mut rep = Replicator::with_config(&cfg, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || !b.objects(&location).is_empty()),
        "{}: official replicate wrote nothing; log:\n{}",
        b.name(),
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(b, &s, &cfg, &db),
        "{}: our restore of the official replica never equalled the source; log:\n{}",
        b.name(),
        rep.log()
    );
    rep.stop();
    let out = s.join("final.db");
    restore_with(b, &our_bin(), &cfg, &db, &out).ok();
    assert_same_dump(
        &out,
        &db,
        &format!("{}: official replicate → our restore", b.name()),
    );
}

/// The port of a proxy's `http://127.0.0.1:PORT` endpoint.
pub fn proxy_port(proxy: &FaultProxy) -> u16 {
    proxy
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("proxy port")
}

/// A third of the requests failing (5xx, resets, stalls, slow and cut answers) never fails an
/// application write, and the replica catches up once the faults stop.
pub fn faults_never_fail_writes(b: &dyn BackendUnderTest) {
    let location = b.fresh_location("faults");
    let proxy = FaultProxy::start(b.port(), FaultConfig::none());
    let s = Scratch::new(&format!("{}-faults", b.name()));
    let db = s.join("app.db");
    let through = proxy_port(&proxy);
    let cfg = write_config(b, &s, &db, &location, through, "100ms", "");
    let mut w = writer(b, &vfs_uri(&db, None), &cfg, through, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    let FaultRun { injected, log } = write_through_faults(w, &proxy);
    assert!(
        injected >= MIN_FAULTS,
        "{}: the proxy injected only {injected} faults in {} requests",
        b.name(),
        proxy.requests()
    );
    assert_no_secret(b, &log, "writer");
    let direct = write_config(b, &s, &db, &location, b.port(), "100ms", "");
    assert_both_restore(b, &s, &direct, &db, "after faults");
}

/// Once the work after the last write is done (merges, snapshot, retention), an idle database
/// makes no request for longer than the 30 s lease lasts (counted by the fault proxy in front
/// of an HTTP store); a write after that replicates.
pub fn an_idle_database_makes_no_requests(b: &dyn BackendUnderTest) {
    let proxy = FaultProxy::start(b.port(), FaultConfig::none());
    let traffic = || proxy.request_lines().len() as u64;
    idle_sends_nothing(b, proxy_port(&proxy), &traffic, &|| {
        format!("{:?}", proxy.request_lines().split_off(0))
    });
}

/// [`an_idle_database_makes_no_requests`] for a store whose protocol is not HTTP (SSH): no
/// byte through a TCP relay in front of it.
pub fn an_idle_database_sends_nothing(b: &dyn BackendUnderTest) {
    let relay = crate::tcp_relay::TcpRelay::start(b.port());
    let traffic = || relay.bytes();
    idle_sends_nothing(b, relay.port, &traffic, &|| {
        format!("{} bytes", relay.bytes())
    });
}

/// Writes through `through`, waits until `traffic` (a count of requests or bytes) settles,
/// then checks it stays put for 35 s; `shown` describes the traffic for a failure message.
fn idle_sends_nothing(
    b: &dyn BackendUnderTest,
    through: u16,
    traffic: &dyn Fn() -> u64,
    shown: &dyn Fn() -> String,
) {
    let location = b.fresh_location("idle");
    let s = Scratch::new(&format!("{}-idle", b.name()));
    let db = s.join("app.db");
    let cfg = write_config(b, &s, &db, &location, through, "1s", FAST_COMPACTION);
    let mut w = writer(b, &vfs_uri(&db, None), &cfg, through, &s.join("writer.log"));
    w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    w.exec("INSERT INTO t(v) VALUES (randomblob(100))");
    let direct = write_config(b, &s, &db, &location, b.port(), "100ms", "");
    assert!(
        wait_restore_equals(b, &s, &direct, &db),
        "{}: initial replication",
        b.name()
    );
    let mut seen = traffic();
    let mut quiet_since = Instant::now();
    let settled = wait_until(Duration::from_secs(60), || {
        let n = traffic();
        if n != seen {
            seen = n;
            quiet_since = Instant::now();
        }
        quiet_since.elapsed() >= Duration::from_secs(5)
    });
    assert!(
        settled,
        "{}: traffic never stopped after the last write",
        b.name()
    );
    let from = traffic();
    std::thread::sleep(Duration::from_secs(35)); // longer than the 30 s lease
    assert_eq!(
        traffic(),
        from,
        "{}: traffic while idle: {}",
        b.name(),
        shown()
    );
    w.exec("INSERT INTO t(v) VALUES ('after idle')");
    assert!(
        wait_restore_equals(b, &s, &direct, &db),
        "{}: write after idle",
        b.name()
    );
    let log = w.close();
    assert_no_secret(b, &log, "writer");
}

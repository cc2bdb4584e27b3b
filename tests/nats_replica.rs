//! NATS JetStream object store (`nats`) replicas end to end, against nats-server on loopback
//! (started by the harness, one user, buckets created with nats-py):
//! - writes through the VFS restore with our `litestream restore` and the official one;
//! - a replica written by the official `litestream replicate` restores with ours;
//! - the password never appears in our logs.
//!
//! NATS is not HTTP, so the HTTP fault proxy does not apply here.
//!
//! Needs: the extension, our CLI, the official binary, nats-server and nats-py (`make test`
//! provides them; without them the tests print a skip, unless
//! `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestream_tests::natsserver::{PASSWORD, USER};
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

/// The environment variable the configs take the password from (`${…}` expansion).
const PASSWORD_VAR: &str = "TEST_NATS_PASSWORD";

/// A `litestream.yml` replicating `db` to `bucket` on `srv` (the official binary ignores
/// credentials in a nats:// URL, so they are keys).
fn nats_config(s: &Scratch, db: &Path, srv: &NatsServer, bucket: &str, sync: &str) -> PathBuf {
    s.write(
        format!("litestream-{:08x}.yml", fastrand::u32(..)),
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      type: nats\n      url: {}/{bucket}\n      \
             username: {USER}\n      password: ${{{PASSWORD_VAR}}}\n      sync-interval: {sync}\n",
            db.display(),
            srv.url()
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

/// `restore -config cfg -o out db` with `bin`.
fn restore_with(bin: &Path, cfg: &Path, db: &Path, out: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["restore", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db)
        .env(PASSWORD_VAR, PASSWORD);
    run_with_input(cmd, &format!("{} restore", bin.display()), b"")
}

#[track_caller]
fn assert_both_restore(s: &Scratch, cfg: &Path, source: &Path, context: &str) {
    for (name, bin) in [("ours", our_bin()), ("official", official_bin())] {
        let out = s.join(format!("restored-{name}-{:08x}.db", fastrand::u32(..)));
        let o = restore_with(&bin, cfg, source, &out);
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

fn wait_restore_equals(s: &Scratch, cfg: &Path, source: &Path) -> bool {
    let want = dump(source);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        restore_with(&our_bin(), cfg, source, &out).success() && out.is_file() && dump(&out) == want
    })
}

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(srv) = NatsServer::shared() else {
        return;
    };
    let bucket = srv.new_bucket("vfs");
    let s = Scratch::new("nats-vfs");
    let db = s.join("app.db");
    let w = Workload::random(WorkloadOptions::default());
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = nats_config(&s, &db, srv, &bucket, "100ms");
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
    let names = srv.objects(&bucket);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("ltx/0/0000000000000001-")),
        "layout: want ltx/0/<min>-<max>.ltx, got {names:?}"
    );
    assert_both_restore(&s, &cfg, &db, "vfs writes");
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(srv) = NatsServer::shared() else {
        return;
    };
    let bucket = srv.new_bucket("official");
    let s = Scratch::new("nats-official");
    let db = s.join("app.db");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\
         INSERT INTO t(v) SELECT hex(randomblob(300)) FROM generate_series(1, 200);",
    )
    .ok();
    let cfg = nats_config(&s, &db, srv, &bucket, "100ms");
    std::env::set_var(PASSWORD_VAR, PASSWORD);
    let mut rep = Replicator::with_config(&cfg, &s.join("replicate.log"));
    assert!(
        wait_until(Duration::from_secs(60), || !srv.objects(&bucket).is_empty()),
        "official replicate wrote nothing to NATS; log:\n{}",
        rep.log()
    );
    for i in 0..5 {
        sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('late-{i}');")).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    rep.assert_running();
    assert!(
        wait_restore_equals(&s, &cfg, &db),
        "our restore of the official nats replica never equalled the source; log:\n{}",
        rep.log()
    );
    rep.stop();
    let out = s.join("final.db");
    restore_with(&our_bin(), &cfg, &db, &out).ok();
    assert_same_dump(&out, &db, "official replicate → our restore");
}

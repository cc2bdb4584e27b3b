//! Writer fencing across PID namespaces of one machine (containers that share the hostname:
//! `--uts=host`, `hostNetwork`, or the same hostname on purpose). A lease holder's pid means
//! nothing in another namespace, so its absence there must not make its lease "stale": the
//! other writer waits for the lease to be released or to expire. Once both writers shipped,
//! and the restored database was corrupt.
//!
//! The second writer runs under a real `unshare --pid --fork --mount-proc`; where the machine
//! does not allow that (no privilege for new namespaces), the tests say so and skip.
//!
//! Needs: the extension, our CLI, `sqlite3`, `/usr/bin/python3`, `unshare` (util-linux).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use litestream_tests::*;

/// Generous bound for background work (uploads, the fence poll every 10 s).
const WAIT: Duration = Duration::from_secs(60);

/// Runs what follows in a new PID namespace with its own `/proc`; `--kill-child` ends the
/// namespace's init (python) when `unshare` itself is killed.
const UNSHARE: [&str; 5] = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

/// True when this machine lets us create a PID namespace; otherwise prints why the caller skips.
fn namespaces_allowed(test: &str) -> bool {
    let ok = Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED {test}: `unshare --pid --fork --mount-proc true` fails on this machine \
             (needs root or unprivileged user namespaces); the cross-namespace lease is untested"
        );
    }
    ok
}

fn writer(s: &Scratch, db: &Path, replica: &Path, extra: &str, log: &str) -> Session {
    let uri = format!("{}{extra}", vfs_uri(db, Some(replica)));
    Session::open(&uri, 1, &[], &s.join(log))
}

/// [`writer`] in a new PID namespace.
fn contained_writer(s: &Scratch, db: &Path, replica: &Path, extra: &str, log: &str) -> Session {
    let uri = format!("{}{extra}", vfs_uri(db, Some(replica)));
    Session::open_wrapped(&UNSHARE, &uri, 1, &[], &s.join(log))
}

/// Rows of `t` in our restore of the replica whose `tag` is `tag` (0 when the replica is empty).
fn replica_rows(s: &Scratch, replica: &Path, tag: &str) -> i64 {
    let out = s.join(format!("probe-{}.db", fastrand::u64(..)));
    let o = run_ours(&["restore", "-o", &out.to_string_lossy(), &file_url(replica)]);
    if !o.success() {
        return 0;
    }
    let n = query_ids(
        &out,
        &format!("SELECT count(*) FROM t WHERE tag = '{tag}';"),
    )[0];
    let _ = std::fs::remove_file(&out);
    n
}

fn seed(s: &Scratch, replica: &Path) -> PathBuf {
    let db = s.join("first.db");
    let mut w = writer(s, &db, replica, "", "first.log");
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);");
    w.exec("INSERT INTO t(tag, v) VALUES ('first', randomblob(3000));");
    w.close();
    db
}

/// The fenced side's log shows the refusal, never a takeover.
#[track_caller]
fn assert_fenced(log: &str, who: &str) {
    assert!(
        !log.contains("taking over a stale writer lease"),
        "{who} took over a live writer's lease from another PID namespace:\n{log}"
    );
    assert!(
        log.contains("being written by another process"),
        "{who} was not told about the other writer:\n{log}"
    );
}

#[test]
fn a_writer_in_another_pid_namespace_does_not_take_over_a_live_lease() {
    let test = "a_writer_in_another_pid_namespace_does_not_take_over_a_live_lease";
    if !namespaces_allowed(test) {
        return;
    }
    let s = Scratch::new("fence-pidns-contained");
    let replica = s.join("replica");
    let a_db = seed(&s, &replica);
    let mut a = writer(&s, &a_db, &replica, "", "a.log");
    a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");

    // B: restored from the replica in its own PID namespace while A is live. A's pid does not
    // exist in B's /proc.
    let b_db = s.join("second.db");
    let mut b = contained_writer(&s, &b_db, &replica, "&restore=1", "b.log");
    b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
    assert!(
        wait_until(WAIT, || {
            let log = b.log();
            log.contains("being written by another process")
                || log.contains("taking over a stale writer lease")
        }),
        "B never checked the lease; B's log:\n{}",
        b.log()
    );
    for i in 0..4 {
        a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");
        b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
        let want = i + 2;
        let got = wait_until_eq(WAIT, &want, || replica_rows(&s, &replica, "a"));
        assert_eq!(got, want, "A's rows stopped reaching the replica");
        assert_eq!(
            replica_rows(&s, &replica, "b"),
            0,
            "B wrote to the replica while A held the lease; B's log:\n{}",
            b.log()
        );
    }
    assert_fenced(&b.log(), "B");
    assert!(
        !a.log().contains("not replicating"),
        "A was disturbed:\n{}",
        a.log()
    );

    // A exits and releases its lease: B takes over without waiting for expiry.
    a.close();
    assert!(
        wait_until(WAIT, || b.log().contains("writer fence cleared")),
        "B never took over after A exited; B's log:\n{}",
        b.log()
    );
    b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
    let got = wait_until_eq(WAIT, &6, || replica_rows(&s, &replica, "b"));
    assert_eq!(got, 6, "B's rows did not reach the replica:\n{}", b.log());
    b.close();
    assert_restores_to(&s, &replica, &b_db, "after-namespace-handover");
}

#[test]
fn a_live_lease_held_from_another_pid_namespace_is_not_taken_over() {
    let test = "a_live_lease_held_from_another_pid_namespace_is_not_taken_over";
    if !namespaces_allowed(test) {
        return;
    }
    let s = Scratch::new("fence-pidns-host");
    let replica = s.join("replica");
    let a_db = seed(&s, &replica);

    // B holds the lease from its own namespace, where it is pid 1; pid 1 exists here too
    // (another process, started at another time).
    let b_db = s.join("second.db");
    let mut b = contained_writer(&s, &b_db, &replica, "&restore=1", "b.log");
    b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
    let got = wait_until_eq(WAIT, &1, || replica_rows(&s, &replica, "b"));
    assert_eq!(got, 1, "B did not replicate:\n{}", b.log());

    let mut a = writer(&s, &a_db, &replica, "", "a.log");
    a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");
    assert!(
        wait_until(WAIT, || {
            let log = a.log();
            log.contains("being written by another process")
                || log.contains("taking over a stale writer lease")
        }),
        "A never checked the lease; A's log:\n{}",
        a.log()
    );
    for i in 0..3 {
        b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
        a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");
        let want = i + 2;
        let got = wait_until_eq(WAIT, &want, || replica_rows(&s, &replica, "b"));
        assert_eq!(got, want, "B's rows stopped reaching the replica");
        assert_eq!(replica_rows(&s, &replica, "a"), 0, "A wrote to B's replica");
    }
    assert_fenced(&a.log(), "A");
    a.kill();
    b.close();
    assert_restores_to(&s, &replica, &b_db, "namespace-holder");
}

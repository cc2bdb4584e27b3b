//! Writer fencing: a database with no position in a non-empty replica never writes there; two
//! live writers of one lineage are fenced by the lease (`lease.json` at the replica root, which
//! the official `litestream restore` ignores); a stale lease is taken over.
//!
//! Needs: the extension, our CLI, the official binary, `sqlite3`, `/usr/bin/python3`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use litestream_tests::*;

/// Generous bound for background work (uploads, the fence poll every 10 s).
const WAIT: Duration = Duration::from_secs(60);

fn writer(s: &Scratch, db: &Path, replica: &Path, extra: &str, log: &str) -> Session {
    let uri = format!("{}{extra}", vfs_uri(db, Some(replica)));
    Session::open(&uri, 1, &[], &s.join(log))
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

fn listing(replica: &Path) -> Vec<(u32, u64, u64, u64)> {
    list_ltx(replica)
        .iter()
        .map(|f| {
            (
                f.level,
                f.min,
                f.max,
                std::fs::metadata(&f.path).unwrap().len(),
            )
        })
        .collect()
}

fn seed(s: &Scratch, replica: &Path) -> std::path::PathBuf {
    let db = s.join("first.db");
    let mut w = writer(s, &db, replica, "", "first.log");
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);");
    w.exec("INSERT INTO t(tag, v) VALUES ('first', randomblob(3000));");
    w.close();
    db
}

#[test]
fn a_database_without_a_position_never_writes_into_a_foreign_replica() {
    let s = Scratch::new("fence-lineage");
    let replica = s.join("replica");
    let first = seed(&s, &replica);
    let before = listing(&replica);

    let other = s.join("other.db");
    let mut w = writer(&s, &other, &replica, "", "other.log");
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);");
    for _ in 0..5 {
        w.exec("INSERT INTO t(tag, v) VALUES ('other', randomblob(100));");
    }
    assert_eq!(
        w.query_i64("SELECT count(*) FROM t;"),
        5,
        "application writes succeed"
    );
    let log = w.close();

    assert_eq!(
        listing(&replica),
        before,
        "the foreign replica was written to"
    );
    let url = file_url(&replica);
    assert!(
        log.contains("already holds another database's history"),
        "{log}"
    );
    assert!(
        log.contains(&url) && log.contains("litestream restore"),
        "the error names the replica and what to do:\n{log}"
    );
    assert_restores_to(&s, &replica, &first, "untouched");
}

#[test]
fn a_second_live_writer_is_fenced_until_the_first_exits() {
    let s = Scratch::new("fence-two-writers");
    let replica = s.join("replica");
    seed(&s, &replica);
    let a_db = s.join("first.db");
    let mut a = writer(&s, &a_db, &replica, "", "a.log");
    a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");

    // B: another machine's copy, restored from the replica while A is live.
    let b_db = s.join("second.db");
    let mut b = writer(&s, &b_db, &replica, "&restore=1", "b.log");
    b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
    assert_eq!(b.query_i64("SELECT count(*) FROM t WHERE tag = 'b';"), 1);

    // A keeps going and keeps replicating; B's rows never reach the replica meanwhile.
    for i in 0..5 {
        a.exec("INSERT INTO t(tag, v) VALUES ('a', randomblob(100));");
        let want = i + 2;
        let got = wait_until_eq(WAIT, &want, || replica_rows(&s, &replica, "a"));
        assert_eq!(got, want, "A's rows stopped reaching the replica");
        assert_eq!(
            replica_rows(&s, &replica, "b"),
            0,
            "the fenced writer wrote to the replica"
        );
    }
    assert!(
        b.log().contains("being written by another process"),
        "B's log:\n{}",
        b.log()
    );
    assert!(
        !a.log().contains("not replicating"),
        "A was disturbed:\n{}",
        a.log()
    );
    assert!(replica.join("lease.json").is_file());

    // A exits (releasing its lease): B takes over. Its history diverged from the replica's, so
    // the chain restarts with a full image of B at B's next commit.
    a.close();
    assert!(
        wait_until(WAIT, || b.log().contains("writer fence cleared")),
        "B never took over after A exited; B's log:\n{}",
        b.log()
    );
    b.exec("INSERT INTO t(tag, v) VALUES ('b', randomblob(100));");
    let got = wait_until_eq(WAIT, &2, || replica_rows(&s, &replica, "b"));
    assert_eq!(
        got,
        2,
        "B's rows did not reach the replica; B's log:\n{}",
        b.log()
    );
    let log = b.close();
    assert!(log.contains("restarting the replica chain"), "{log}");
    // The replica now follows B; the official restore ignores lease.json.
    assert!(replica.join("lease.json").is_file());
    assert_restores_to(&s, &replica, &b_db, "after-takeover");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn plant_foreign_lease(replica: &Path, expires_ms: i64) {
    std::fs::create_dir_all(replica).unwrap();
    let lease = format!(
        "{{\"owner\": \"elsewhere:boot/4242/1/feed\", \"host\": \"elsewhere:boot\", \"pid\": 4242, \
         \"pid_start\": 1, \"db\": \"/elsewhere/app.db\", \"acquired_ms\": 0, \"expires_ms\": {expires_ms}}}\n"
    );
    std::fs::write(replica.join("lease.json"), lease).unwrap();
}

#[test]
fn an_expired_lease_of_another_machine_is_taken_over() {
    let s = Scratch::new("fence-expired");
    let replica = s.join("replica");
    plant_foreign_lease(&replica, now_ms() - 1000);
    let db = seed(&s, &replica);
    let log = std::fs::read_to_string(s.join("first.log")).unwrap();
    assert!(log.contains("taking over a stale writer lease"), "{log}");
    assert_restores_to(&s, &replica, &db, "expired-lease");
}

#[test]
fn a_live_lease_blocks_until_it_expires() {
    let s = Scratch::new("fence-live-lease");
    let replica = s.join("replica");
    plant_foreign_lease(&replica, now_ms() + 8000);
    let db = s.join("app.db");
    let mut w = writer(&s, &db, &replica, "", "w.log");
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);");
    w.exec("INSERT INTO t(tag, v) VALUES ('w', randomblob(100));");
    assert!(list_ltx(&replica).is_empty() || w.log().contains("writer lease acquired"));
    // Once the other machine's lease lapses, this writer takes over without a new commit.
    let got = wait_until_eq(WAIT, &1, || replica_rows(&s, &replica, "w"));
    assert_eq!(got, 1, "never took over the expired lease:\n{}", w.log());
    let log = w.close();
    assert!(
        log.contains("being written by another process"),
        "it was refused first:\n{log}"
    );
    assert_restores_to(&s, &replica, &db, "live-lease");
}

#[test]
fn a_killed_writer_on_this_machine_does_not_block_its_successor() {
    let s = Scratch::new("fence-killed");
    let replica = s.join("replica");
    let db = s.join("app.db");
    let mut w = writer(&s, &db, &replica, "", "w1.log");
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);");
    w.exec("INSERT INTO t(tag, v) VALUES ('one', randomblob(100));");
    assert_eq!(
        wait_until_eq(WAIT, &1, || replica_rows(&s, &replica, "one")),
        1
    );
    w.kill(); // its lease is left behind, unexpired
    let mut w = writer(&s, &db, &replica, "", "w2.log");
    w.exec("INSERT INTO t(tag, v) VALUES ('two', randomblob(100));");
    let log = w.close();
    assert!(!log.contains("being written by another process"), "{log}");
    assert!(log.contains("taking over a stale writer lease"), "{log}");
    assert_restores_to(&s, &replica, &db, "after-kill");
}

//! `fork()` while another thread is inside SQLite. A Python parent (Debian's python3 and its
//! system SQLite, the extension loaded, the database named by the configuration) runs a
//! thread that commits and draws random blobs without pause, and forks children one after
//! another. Two things can go wrong in such a child, with or without the extension:
//! - a mutex a parent thread held at the fork (SQLite's static mutexes: the random generator's,
//!   the allocator's, the unix VFS's; or the stderr lock) stays locked forever in the child,
//!   which hangs at its first use: plain SQLite does this to about one child in five here;
//! - SQLite's per-process lock records of a file the parent has open are copied into the child
//!   and are wrong there: a child opening that database waits for a lock nobody holds.
//!
//! The extension's `pthread_atfork` handlers take those mutexes around the fork, so a child
//! using SQLite (another database here) must finish; a child opening the replicated database
//! its parent has open gets a clear error at once. The parent waits for each child with a
//! generous bound: a child still running then counts as hung (and is killed). Afterwards the
//! replica must restore to the database.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `/usr/bin/python3`.

use std::path::Path;

use litestream_tests::*;

/// Children forked per run: enough that, without the handlers, some forks land while the
/// parent's thread holds one of SQLite's mutexes.
const CHILDREN: usize = 100;

/// `ARGS`: the replicated database, the database the children open, the number of children.
const FORKER: &str = r#"
import os, signal, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: the point here
db, target, children = ARGS[0], ARGS[1], int(ARGS[2])
c = sqlite3.connect(db, isolation_level=None, timeout=60)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, v BLOB)")
stop = threading.Event()
def writer():
    w = sqlite3.connect(db, isolation_level=None, timeout=60)
    while not stop.is_set():
        w.execute("INSERT INTO t(who, v) VALUES ('parent', randomblob(700))")
        for _ in range(10):
            w.execute("SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) SELECT randomblob(40) FROM n)").fetchone()
    w.close()
th = threading.Thread(target=writer)
th.start()
while c.execute("SELECT count(*) FROM t").fetchone()[0] < 20:
    time.sleep(0.01)
pids = []
for k in range(children):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            cc = sqlite3.connect(target, isolation_level=None, timeout=60)
            cc.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, who TEXT, v BLOB)")
            cc.execute("INSERT INTO t(who, v) VALUES ('child', randomblob(100))")
            cc.close()
        except sqlite3.Error as e:
            os.write(1, ("child error: %s\n" % e).encode())
            code = 2
        os._exit(code)
    pids.append(pid)
# A generous bound: a child that has not finished by then never will.
deadline = time.time() + 120
codes = {}
while len(codes) < len(pids) and time.time() < deadline:
    for p in pids:
        if p not in codes:
            r, st = os.waitpid(p, os.WNOHANG)
            if r:
                codes[p] = os.waitstatus_to_exitcode(st)
    time.sleep(0.02)
hung = [p for p in pids if p not in codes]
for p in hung:
    os.kill(p, signal.SIGKILL)
    os.waitpid(p, 0)
stop.set()
th.join()
failed = sum(1 for v in codes.values() if v != 0)
print("children=%d finished=%d failed=%d hung=%d" % (children, len(codes), failed, len(hung)))
c.close()
"#;

struct Run {
    scratch: Scratch,
    db: std::path::PathBuf,
    replica: std::path::PathBuf,
    out: Output,
}

/// Runs [`FORKER`]; the children open `target(scratch)`.
fn run(label: &str, target: impl Fn(&Scratch, &Path) -> std::path::PathBuf) -> Run {
    let scratch = Scratch::new(label);
    let db = scratch.join("app.db");
    let replica = scratch.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("100ms")
        .write(&scratch.join("litestream.yml"));
    let target = target(&scratch, &db);
    let out = python(
        &format!("{PY_LOAD_EXTENSION}{FORKER}"),
        &[
            &db.to_string_lossy(),
            &target.to_string_lossy(),
            &CHILDREN.to_string(),
        ],
        &[("LITESTREAM_CONFIG", &cfg)],
    );
    assert!(out.success(), "{out}");
    Run {
        scratch,
        db,
        replica,
        out,
    }
}

#[test]
fn forked_children_do_not_hang_on_a_mutex_a_parent_thread_held() {
    let r = run("fork-other-db", |s, _| s.join("child.db"));
    let want = format!("children={CHILDREN} finished={CHILDREN} failed=0 hung=0");
    assert!(
        r.out.stdout.contains(&want),
        "every child must use SQLite and exit: want {want:?}\n{}",
        r.out
    );
    let child_rows = query(&r.scratch.join("child.db"), "SELECT count(*) FROM t;");
    assert_eq!(child_rows.trim(), CHILDREN.to_string());
    assert_restores_to(&r.scratch, &r.replica, &r.db, "fork-other-db");
}

#[test]
fn a_forked_child_is_refused_the_replicated_database_its_parent_has_open() {
    let r = run("fork-same-db", |_, db| db.to_path_buf());
    let want = format!("children={CHILDREN} finished={CHILDREN} failed={CHILDREN} hung=0");
    assert!(
        r.out.stdout.contains(&want),
        "every child must get an error at once, none may hang or open the database: want \
         {want:?}\n{}",
        r.out
    );
    let refusals = r
        .out
        .stdout
        .lines()
        .filter(|l| *l == "child error: unable to open database file")
        .count();
    assert_eq!(refusals, CHILDREN, "{}", r.out);
    let logged = r
        .out
        .stderr
        .matches("this process was forked from one that has")
        .count();
    assert_eq!(
        logged, CHILDREN,
        "each refusal is logged with its reason\n{}",
        r.out
    );
    assert_eq!(
        query(&r.db, "SELECT count(*) FROM t WHERE who = 'child';").trim(),
        "0"
    );
    assert_restores_to(&r.scratch, &r.replica, &r.db, "fork-same-db");
}

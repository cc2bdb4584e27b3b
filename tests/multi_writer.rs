//! Several real processes writing one database through the extension (`LD_PRELOAD`, Debian's
//! python3): the replica must stay restorable by both binaries at every moment, and once every
//! writer has closed it must hold every committed transaction, with or without a writer
//! SIGKILLed mid-run.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `/usr/bin/python3`.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use litestream_tests::*;

/// Rows each writer commits, one autocommit transaction each.
const ROWS_PER_WRITER: usize = 600;
/// Writers started together; one more starts [`LATE_START`] later.
const EARLY_WRITERS: usize = 4;
const LATE_START: Duration = Duration::from_millis(1500);

/// One writer: `ROWS` autocommit inserts with a short sleep between them, then the connection
/// stays open a while (so other writers' commits land while it is idle), then it closes.
const WRITER: &str = r#"
import time
db, rows, hold = ARGS[0], int(ARGS[1]), float(ARGS[2])
c = sqlite3.connect(db, timeout=30, isolation_level=None)
pid = os.getpid()
for i in range(rows):
    c.execute("insert into t(k, pid, pad) values (?, ?, randomblob(200))", ("%d-%d" % (pid, i), pid))
    time.sleep(0.003)
print("done", pid, flush=True)
time.sleep(hold)
c.close()
"#;

fn spawn_writer(db: &Path, cfg: &Path, hold_s: f64) -> Child {
    let env: [(&str, &Path); 2] = [("LD_PRELOAD", &so_path()), ("LITESTREAM_CONFIG", cfg)];
    let mut cmd = python_command(
        WRITER,
        &[
            &db.to_string_lossy(),
            &ROWS_PER_WRITER.to_string(),
            &hold_s.to_string(),
        ],
        &env,
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start python3 writer")
}

fn finish(child: Child, what: &str) -> std::process::Output {
    let out = child.wait_with_output().expect("wait for writer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    // A process that does not stage never asks the replica anything, so it is never refused.
    for refusal in [
        "is being written by another process",
        "already holds another database's history",
    ] {
        assert!(
            !stderr.contains(refusal),
            "{what} touched the replica while another process stages:\n{stderr}"
        );
    }
    out
}

/// Runs the reproduction: five writers (four at once, one late), optionally SIGKILLs one of
/// the first four mid-run, waits for all of them, then checks both restores.
fn run(label: &str, kill_one: bool) {
    let s = Scratch::new(label);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("200ms")
        .write(&s.join("litestream.yml"));
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=WAL;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT UNIQUE, pid INT, pad BLOB);",
    )
    .ok();

    let mut writers: Vec<Child> = (0..EARLY_WRITERS)
        .map(|_| spawn_writer(&db, &cfg, 5.0))
        .collect();
    std::thread::sleep(LATE_START);
    if kill_one {
        // Reaped at once, as a supervisor would: until then the killed process is a zombie
        // that still counts as a live lease holder.
        let mut victim = writers.remove(1);
        signal(&victim, libc::SIGKILL);
        let _ = victim.wait();
    }
    writers.push(spawn_writer(&db, &cfg, 5.0));
    for (i, w) in writers.into_iter().enumerate() {
        let out = finish(w, &format!("writer {i}"));
        assert!(
            out.status.success(),
            "writer {i} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let rows = query_ids(&db, "SELECT count(*) FROM t;")[0];
    let want_min = (EARLY_WRITERS - usize::from(kill_one)) * ROWS_PER_WRITER + ROWS_PER_WRITER;
    assert!(
        rows as usize >= want_min,
        "{label}: the database has {rows} rows, expected at least {want_min}"
    );
    // Every writer has closed: the last one to close shipped what the WAL held, so both
    // restores equal the database right away (no wait, no reopen).
    assert_restores_to(&s, &replica, &db, label);
}

#[test]
fn five_python_writers_leave_a_complete_restorable_replica() {
    run("multi-writer", false);
}

#[test]
fn five_python_writers_one_killed_leave_a_complete_restorable_replica() {
    run("multi-writer-kill", true);
}

//! Replicas written by our extension restore — with the official `litestream restore` 0.5.17
//! and with ours — to exactly the source database, over randomized workloads (random seed and
//! page size per run, sync-interval 0 and 1s, config via `path:` and `url:`, one or several
//! shell sessions), written by the `sqlite3` shell and in-process through rusqlite.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`.

use std::path::Path;
use std::time::Duration;

use litestream_tests::*;

struct ShellCase {
    name: &'static str,
    page_size: Option<u32>,
    sync_interval: &'static str,
    as_url: bool,
    sessions: usize,
}

/// Runs a random workload through the extension in `sessions` consecutive shell processes,
/// then checks that both restores equal the source. Each shell exits normally, so everything
/// committed must be in the replica when it has exited (atexit flush): no waiting here.
fn shell_case(c: ShellCase) {
    let s = Scratch::new(c.name);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let w = Workload::random(WorkloadOptions {
        page_size: c.page_size,
        ..WorkloadOptions::default()
    });
    eprintln!(
        "{}: {}, sync-interval {}, url form {}, {} session(s)",
        c.name,
        w.describe(),
        c.sync_interval,
        c.as_url,
        c.sessions
    );
    w.prepare_db(&db);
    let mut cfg = Config::new()
        .db(&db, &replica)
        .sync_interval(c.sync_interval);
    if c.as_url {
        cfg = cfg.as_url();
    }
    let cfg = cfg.write(&s.join("litestream.yml"));
    let uri = vfs_uri(&db, None);
    let chunk = w.steps.len().div_ceil(c.sessions);
    for (i, part) in w.steps.chunks(chunk).enumerate() {
        let body = format!("PRAGMA cache_size={};\n{}", w.cache_size, part.join("\n"));
        // Kept beside the database for replaying a failure by hand.
        std::fs::write(s.join(format!("session-{i}.sql")), &body).expect("write workload");
        let out = sqlite3_ext(&uri, Some(&cfg), &body);
        assert!(out.success(), "{}: session {i}: {out}", w.describe());
    }
    assert_eq!(
        query(&db, "PRAGMA journal_mode;").trim(),
        "wal",
        "the extension switches replicated databases to WAL mode"
    );
    assert_restores_to(&s, &replica, &db, "final");
}

#[test]
fn shell_random_page_size_sync_1s() {
    shell_case(ShellCase {
        name: "interop-sync1s",
        page_size: None,
        sync_interval: "1s",
        as_url: false,
        sessions: 1,
    });
}

#[test]
fn shell_random_page_size_sync_0_url_form() {
    shell_case(ShellCase {
        name: "interop-sync0",
        page_size: None,
        sync_interval: "0",
        as_url: true,
        sessions: 1,
    });
}

#[test]
fn shell_new_database_created_by_the_extension() {
    // Default page size: the database file is created by the extension itself.
    shell_case(ShellCase {
        name: "interop-newdb",
        page_size: Some(4096),
        sync_interval: "1s",
        as_url: false,
        sessions: 2,
    });
}

#[test]
fn shell_page_size_512_several_sessions() {
    shell_case(ShellCase {
        name: "interop-512",
        page_size: Some(512),
        sync_interval: "1s",
        as_url: false,
        sessions: 3,
    });
}

#[test]
fn shell_page_size_65536_several_sessions() {
    shell_case(ShellCase {
        name: "interop-65536",
        page_size: Some(65536),
        sync_interval: "0",
        as_url: false,
        sessions: 3,
    });
}

/// Restores with our CLI until the copy equals `source` (bounded): after the connections of
/// an in-process writer close, the upload may still be in flight in background threads.
fn wait_restore_equals(s: &Scratch, replica: &Path, source: &Path) -> bool {
    let want = dump(source);
    let url = file_url(replica);
    let out = s.join("poll.db");
    wait_until(Duration::from_secs(120), || {
        let _ = std::fs::remove_file(&out);
        run_ours(&["restore", "-o", &out.to_string_lossy(), &url]).success()
            && out.is_file()
            && dump(&out) == want
    })
}

fn in_process_case(name: &str, page_size: Option<u32>) {
    let s = Scratch::new(name);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let w = Workload::random(WorkloadOptions {
        page_size,
        ..WorkloadOptions::default()
    });
    eprintln!("{name}: {}", w.describe());
    w.prepare_db(&db);
    {
        // Two connections through the VFS in this process, taking turns.
        let a = open_replicated(&db, Some(&replica));
        let b = open_replicated(&db, Some(&replica));
        for conn in [&a, &b] {
            conn.busy_timeout(Duration::from_secs(20)).unwrap();
            conn.execute_batch(&format!("PRAGMA cache_size={};", w.cache_size))
                .unwrap();
        }
        for (i, step) in w.steps.iter().enumerate() {
            let conn = if i % 2 == 0 { &a } else { &b };
            conn.execute_batch(step)
                .unwrap_or_else(|e| panic!("{}: step {i} {step:?}: {e}", w.describe()));
        }
        let mode: String = a
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            mode, "wal",
            "the extension switches replicated databases to WAL mode"
        );
    }
    assert!(
        wait_restore_equals(&s, &replica, &db),
        "{}: our restore of the replica never equalled the source after the connections closed",
        w.describe()
    );
    assert_restores_to(&s, &replica, &db, "final");
}

#[test]
fn in_process_rusqlite_random_page_size() {
    in_process_case("interop-inproc", None);
}

#[test]
fn in_process_rusqlite_page_size_1024() {
    in_process_case("interop-inproc-1024", Some(1024));
}

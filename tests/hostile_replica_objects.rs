//! Hostile or stray objects in a replica the application writes to, seen from inside the
//! application process (the extension loaded by Debian's python3):
//! - a 1 GiB sparse `lease.json` is refused after reading a few KiB, named in the log, and left
//!   alone; removing it lets replication resume;
//! - a `lease.json` that is not a lease is logged before it is replaced;
//! - a stray LTX file named with the largest TXID stops replication with an error naming it
//!   (the next TXID used to wrap to 0, and every sync failed with an unrelated message), and
//!   replication resumes once it is removed.
//!
//! Needs: the extension, our CLI, `/usr/bin/python3`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use litestream_tests::*;

/// Generous bound for background work (uploads, the uploader's retry backoff).
const WAIT: Duration = Duration::from_secs(60);

/// Far above what the extension needs for one small commit (tens of MB) and far below the
/// 1 GiB the sparse lease claims: reading it whole would cross it.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// Opens `ARGS[0]`, commits one row, waits (bounded) until its own log (`ARGS[1]`) mentions
/// `ARGS[2]`, then prints its peak RSS in KiB.
const ONE_COMMIT: &str = r#"
import resource, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
c = sqlite3.connect(ARGS[0], uri=True, isolation_level=None)
c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
c.execute("INSERT INTO t(v) VALUES ('one')")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if ARGS[2] in open(ARGS[1], errors="replace").read():
        break
    time.sleep(0.1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
c.close()
"#;

/// Runs [`ONE_COMMIT`] on `db` replicated to `replica`; returns (peak RSS KiB, log).
fn one_commit(s: &Scratch, db: &Path, replica: &Path, wait_for: &str) -> (u64, String) {
    let log = s.join(format!("app-{:08x}.log", fastrand::u32(..)));
    std::fs::write(&log, "").unwrap();
    let uri = vfs_uri(db, Some(replica));
    let log_arg = log.to_string_lossy().into_owned();
    let out = python_command(ONE_COMMIT, &[&uri, &log_arg, wait_for], &[])
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .expect("run python");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "python failed: {:?}\n{text}",
        out.status
    );
    let rss = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "no RSS printed: {:?}\n{text}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    (rss, text)
}

fn replica_rows(s: &Scratch, replica: &Path) -> i64 {
    let out = s.join(format!("probe-{}.db", fastrand::u64(..)));
    let o = run_ours(&["restore", "-o", &out.to_string_lossy(), &file_url(replica)]);
    if !o.success() {
        return 0;
    }
    let n = query_ids(&out, "SELECT count(*) FROM t;")[0];
    let _ = std::fs::remove_file(&out);
    n
}

#[test]
fn a_huge_sparse_lease_is_refused_without_being_read() {
    let s = Scratch::new("hostile-sparse-lease");
    let replica = s.join("replica");
    std::fs::create_dir_all(&replica).unwrap();
    let lease = replica.join("lease.json");
    std::fs::File::create(&lease)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let db = s.join("app.db");
    let (rss, log) = one_commit(&s, &db, &replica, "larger than");
    assert!(
        log.contains("lease.json") && log.contains("larger than 16384 bytes"),
        "the log names the oversized lease:\n{log}"
    );
    assert!(
        rss < MAX_RSS_KIB,
        "the application's peak RSS was {rss} KiB reading a sparse lease:\n{log}"
    );
    assert_eq!(
        std::fs::metadata(&lease).unwrap().len(),
        1 << 30,
        "the unreadable lease was overwritten"
    );
    assert!(
        list_ltx(&replica).is_empty(),
        "replicated past an unreadable lease"
    );

    // Once the stray file is removed, the next writer replicates.
    std::fs::remove_file(&lease).unwrap();
    let (_, log) = one_commit(&s, &db, &replica, "sync complete");
    let got = wait_until_eq(WAIT, &2, || replica_rows(&s, &replica));
    assert_eq!(got, 2, "replication did not resume:\n{log}");
}

#[test]
fn an_undecodable_lease_is_logged_then_replaced() {
    let s = Scratch::new("hostile-junk-lease");
    let replica = s.join("replica");
    std::fs::create_dir_all(&replica).unwrap();
    std::fs::write(replica.join("lease.json"), b"\x00\x01 not json").unwrap();
    let db = s.join("app.db");
    let (_, log) = one_commit(&s, &db, &replica, "sync complete");
    assert!(
        log.contains("writer lease is not a lease"),
        "the junk lease was replaced silently:\n{log}"
    );
    let got = wait_until_eq(WAIT, &1, || replica_rows(&s, &replica));
    assert_eq!(got, 1, "{log}");
}

#[test]
fn a_stray_max_txid_file_is_named_and_does_not_wrap() {
    let s = Scratch::new("hostile-max-txid");
    let replica = s.join("replica");
    let db = s.join("app.db");
    one_commit(&s, &db, &replica, "sync complete");
    assert_eq!(wait_until_eq(WAIT, &1, || replica_rows(&s, &replica)), 1);
    let stray = replica.join("ltx/0/ffffffffffffffff-ffffffffffffffff.ltx");
    std::fs::write(&stray, b"junk").unwrap();

    let (_, log) = one_commit(&s, &db, &replica, "remove it");
    assert!(
        log.contains("ffffffffffffffff-ffffffffffffffff.ltx") && log.contains("remove it"),
        "the error names the stray file and what to do:\n{log}"
    );
    assert!(!log.contains("min TXID is 0"), "the TXID wrapped:\n{log}");

    std::fs::remove_file(&stray).unwrap();
    let (_, log) = one_commit(&s, &db, &replica, "sync complete");
    let got = wait_until_eq(WAIT, &3, || replica_rows(&s, &replica));
    assert_eq!(got, 3, "replication did not resume:\n{log}");
}

//! Compaction levels, snapshots and retention end to end: a writer replicates through the
//! extension with accelerated intervals; the replica then holds L0..L3 and L9 files, retention
//! has trimmed it, and both the official `litestream restore` and ours restore it at the latest
//! state, at TXIDs and at timestamps, identically.
//!
//! Needs: the extension, our CLI, the official binary, `sqlite3`, `/usr/bin/python3`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use litestream_tests::*;

/// Accelerated schedule: every level and the snapshot run several times in a short test.
const SCHEDULE: [&str; 4] = [
    "levels: [{interval: 1s}, {interval: 2s}, {interval: 3s}]",
    "snapshot: {interval: 4s, retention: 6s}",
    "l0-retention: 2s",
    "l0-retention-check-interval: 1s",
];

/// Rows written, one per transaction, about 10 per second.
const ROWS: i64 = 150;

fn write_rows(s: &Scratch, cfg: &Path, db: &Path) -> String {
    let mut w = Session::open(
        &vfs_uri(db, None),
        1,
        &[("LITESTREAM_CONFIG", cfg)],
        &s.join("writer.log"),
    );
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
    for id in 1..=ROWS {
        w.exec(&format!(
            "INSERT INTO t VALUES ({id}, randomblob({}));",
            50 + id * 37 % 900
        ));
        std::thread::sleep(Duration::from_millis(90));
    }
    w.close()
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let out = python(
        "import datetime\nms = int(ARGS[0])\nd = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)\nprint(d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (ms % 1000))",
        &[&ms.to_string()],
        &[],
    )
    .ok();
    out.stdout.trim().to_string()
}

/// Ids in a restored database: always 1..=k for a consistent state of this writer.
#[track_caller]
fn prefix_len(db: &Path, ctx: &str) -> i64 {
    let ids = query_ids(db, "SELECT id FROM t ORDER BY id;");
    let k = ids.len() as i64;
    assert_eq!(
        ids,
        (1..=k).collect::<Vec<_>>(),
        "{ctx}: not a prefix of the writer's rows"
    );
    k
}

/// Restores at `flag value` with both binaries; both must succeed and agree. Returns the rows.
#[track_caller]
fn both_at(s: &Scratch, url: &str, flag: &str, value: &str, tag: &str) -> i64 {
    let ours = s.join(format!("{tag}-ours.db"));
    let off = s.join(format!("{tag}-official.db"));
    let o = run_ours(&["restore", flag, value, "-o", &ours.to_string_lossy(), url]);
    assert!(o.success(), "ours {flag} {value}: {o}");
    let o = run_official(&["restore", flag, value, "-o", &off.to_string_lossy(), url]);
    assert!(o.success(), "official {flag} {value}: {o}");
    let ctx = format!("{flag} {value}");
    assert_integrity(&ours, &ctx);
    assert_integrity(&off, &ctx);
    assert_same_dump(&ours, &off, &format!("{ctx}: ours vs official"));
    prefix_len(&ours, &ctx)
}

#[test]
fn levels_snapshots_and_retention_restore_everywhere() {
    let s = Scratch::new("history");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let mut c = Config::new().db(&db, &replica).sync_interval("100ms");
    for line in SCHEDULE {
        c = c.extra(line);
    }
    let cfg = c.write(&s.join("litestream.yml"));
    let log = write_rows(&s, &cfg, &db);
    let files = list_ltx(&replica);
    let at = |level: u32| -> Vec<&LtxName> { files.iter().filter(|f| f.level == level).collect() };

    // Every level was written, and each level is one contiguous run of TXIDs.
    for level in [0, 1, 2, 3, 9] {
        assert!(
            !at(level).is_empty(),
            "no L{level} file: {}",
            describe(&files)
        );
    }
    for level in 1..=3 {
        for w in at(level).windows(2) {
            assert_eq!(
                w[1].min,
                w[0].max + 1,
                "L{level} not contiguous: {}",
                describe(&files)
            );
        }
        // Each file of level N is a merge of whole files of level N-1 (where those remain).
        let below = at(level - 1);
        let lowest = below.first().map(|f| f.min).unwrap_or(u64::MAX);
        for f in at(level).iter().filter(|f| f.min >= lowest && level > 1) {
            assert!(
                below.iter().any(|b| b.min == f.min),
                "L{level} {:x}-{:x} does not start at an L{} file",
                f.min,
                f.max,
                level - 1
            );
            assert!(
                below.iter().any(|b| b.max == f.max),
                "L{level} {:x}-{:x} does not end at an L{} file",
                f.min,
                f.max,
                level - 1
            );
        }
        for f in at(level) {
            let h = read_header(&f.path);
            assert_eq!(
                (h.flags, h.wal_offset, h.wal_size),
                (2, 0, 0),
                "{}",
                f.path.display()
            );
        }
    }
    for f in at(9) {
        assert_eq!(f.min, 1, "snapshots start at TXID 1");
        assert!(
            is_full_database(&f.path),
            "{} is not a whole database",
            f.path.display()
        );
    }
    // Retention ran: the L0 files merged long ago are gone, old snapshots too.
    assert!(
        at(0)[0].min > 1,
        "L0 retention never ran: {}",
        describe(&files)
    );
    assert!(
        log.contains("l0 retention enforced"),
        "no L0 retention in the log"
    );
    assert!(
        log.contains("retention enforced replica"),
        "no snapshot retention in the log"
    );
    assert!(at(9).len() <= 3, "old snapshots kept: {}", describe(&files));

    // Latest: both restores equal the database.
    assert_restores_to(&s, &replica, &db, "latest");
    let url = file_url(&replica);

    // `litestream ltx` lists the same as the official binary.
    let ours = run_ours(&["ltx", "-level", "all", &url]).ok();
    let official = run_official(&["ltx", "-level", "all", &url]).ok();
    assert_eq!(ours.stdout, official.stdout, "ltx -level all");

    // -txid at every file end the official planner can reach from a snapshot: equal results,
    // growing with the TXID.
    // The oldest restorable point: the oldest snapshot, or the end of the oldest retained file
    // that starts at TXID 1 (a level file below the snapshots that retention has not reached;
    // docs/compaction.md).
    let oldest = files
        .iter()
        .filter(|f| f.level == 9 || f.min == 1)
        .map(|f| f.max)
        .min()
        .unwrap();
    let mut ends: Vec<u64> = files
        .iter()
        .filter(|f| f.max >= oldest)
        .map(|f| f.max)
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let step = (ends.len() / 6).max(1);
    let mut last = 0;
    for (i, txid) in ends.iter().step_by(step).enumerate() {
        let hex = format!("{txid:016x}");
        let plan = run_official(&[
            "restore",
            "-dry-run",
            "-txid",
            &hex,
            "-o",
            "/nonexistent/x",
            &url,
        ]);
        if !plan.success() {
            continue; // not an exact point for the official planner
        }
        let k = both_at(&s, &url, "-txid", &hex, &format!("txid{i}"));
        assert!(
            k >= last,
            "-txid {hex}: {k} rows, fewer than an earlier TXID's {last}"
        );
        last = k;
    }
    assert!(last > 0, "no -txid was restored");

    // -timestamp just after some files were made.
    let mut times: Vec<SystemTime> = files
        .iter()
        .filter(|f| f.max >= oldest)
        .map(|f| std::fs::metadata(&f.path).unwrap().modified().unwrap())
        .collect();
    times.sort();
    // Strictly before the newest file: after it, both binaries say the time does not exist.
    let newest = *times.last().unwrap();
    times.retain(|t| *t < newest);
    let mut last = 0;
    for (i, t) in times.iter().step_by((times.len() / 5).max(1)).enumerate() {
        let ts = rfc3339(*t + Duration::from_millis(1));
        let k = both_at(&s, &url, "-timestamp", &ts, &format!("ts{i}"));
        assert!(k >= last, "-timestamp {ts}: {k} rows, fewer than before");
        last = k;
    }

    // Before the retained history: a clear error naming both ends.
    if oldest > 1 {
        let out = s.join("too-old.db");
        let o = run_ours(&[
            "restore",
            "-txid",
            &format!("{:016x}", oldest - 1),
            "-o",
            &out.to_string_lossy(),
            &url,
        ]);
        assert!(!o.success(), "{o}");
        assert!(
            o.stderr.contains("oldest restorable point")
                && o.stderr.contains(&format!("{oldest:016x}")),
            "{o}"
        );
        assert!(!out.exists());
        let o = run_ours(&[
            "restore",
            "-timestamp",
            "2000-01-01T00:00:00Z",
            "-o",
            &out.to_string_lossy(),
            &url,
        ]);
        assert!(
            !o.success() && o.stderr.contains("oldest restorable point"),
            "{o}"
        );
    }
}

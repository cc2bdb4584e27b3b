//! Replicas written by the official `litestream replicate` 0.5.17 restore with our CLI to the
//! same database as with the official restore, at the latest TXID and at every intermediate one.
//!
//! Needs: our CLI (`LITESTREAM_BIN`), the official binary (`LITESTREAM_OFFICIAL`), `sqlite3`.

use std::path::Path;
use std::time::Duration;

use litestream_tests::replica::describe;
use litestream_tests::*;

const CATCH_UP: Duration = Duration::from_secs(60);

/// Waits until our restore of the replica equals `db` (the official replicate has shipped
/// everything committed so far); panics with the replicate log if not. Returns the highest TXID.
///
/// Waiting for "a TXID above the last one" is not enough: after the official replicate runs its
/// own PASSIVE checkpoint and the WAL restarts, 0.5.17 holds back its own bookkeeping write until
/// the next change, and a workload chunk may change nothing at all.
#[track_caller]
fn wait_replica_matches(rep: &mut Replicator, s: &Scratch, replica: &Path, db: &Path) -> u64 {
    // The official replicate keeps its own bookkeeping tables in the database (`_litestream_seq`,
    // `_litestream_lock`) and writes them on its own schedule; compare the application's data.
    let app_dump = |p: &Path| -> String {
        dump(p)
            .lines()
            .filter(|l| !l.contains("_litestream_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let want = app_dump(db);
    let probe = s.join("catch-up-probe.db");
    let url = file_url(replica);
    let ok = wait_until(CATCH_UP, || {
        let _ = std::fs::remove_file(&probe);
        max_txid(replica) > 0
            && run_ours(&["restore", "-o", &probe.to_string_lossy(), &url]).success()
            && app_dump(&probe) == want
    });
    let _ = std::fs::remove_file(&probe);
    rep.assert_running();
    assert!(
        ok,
        "the official replicate did not ship the database within {CATCH_UP:?}; files: {}\nlog:\n{}",
        describe(&list_ltx(replica)),
        rep.log()
    );
    max_txid(replica)
}

/// Waits until the replica's highest TXID passes `above`; panics with the replicate log if not.
#[track_caller]
fn wait_txid_above(rep: &mut Replicator, replica: &Path, above: u64) -> u64 {
    let ok = wait_until(CATCH_UP, || max_txid(replica) > above);
    rep.assert_running();
    assert!(
        ok,
        "official replicate wrote no TXID above {above:#x} within {CATCH_UP:?}; files: {}\nlog:\n{}",
        describe(&list_ltx(replica)),
        rep.log()
    );
    max_txid(replica)
}

/// `restore -txid` with both CLIs for each TXID in `txids`: same success, same database.
#[track_caller]
fn compare_txid_restores(s: &Scratch, replica: &Path, txids: &[u64]) {
    let url = file_url(replica);
    for &txid in txids {
        let hex = format!("{txid:016x}");
        let ours = s.join(format!("txid-{hex}-ours.db"));
        let official = s.join(format!("txid-{hex}-official.db"));
        let o = run_ours(&[
            "restore",
            "-txid",
            &hex,
            "-o",
            &ours.to_string_lossy(),
            &url,
        ]);
        let f = run_official(&[
            "restore",
            "-txid",
            &hex,
            "-o",
            &official.to_string_lossy(),
            &url,
        ]);
        assert_eq!(
            o.success(),
            f.success(),
            "-txid {hex}: exit status differs\nours: {o}\nofficial: {f}"
        );
        if f.success() {
            assert_integrity(&ours, &format!("our restore -txid {hex}"));
            assert_same_dump(
                &ours,
                &official,
                &format!("restore -txid {hex}, ours vs official"),
            );
        }
    }
}

#[test]
fn restore_replica_of_running_official_replicate_with_wal_reset() {
    let s = Scratch::new("official-replica");
    let db = s.join("db.sqlite");
    let replica = s.join("replica");
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=wal;
         CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, v BLOB);
         CREATE INDEX t_s ON t(s);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200)
         INSERT INTO t(s, v) SELECT 'init-' || x, randomblob(300) FROM c;",
    )
    .clean();
    // A short L1 interval so that a compacted level shows up within a short run.
    let cfg = Config::new()
        .db(&db, &replica)
        .extra("levels: [{interval: 5s}]")
        .write(&s.join("litestream.yml"));
    let log = s.join("replicate.log");

    let mut rep = Replicator::with_config(&cfg, &log);
    wait_txid_above(&mut rep, &replica, 0);
    let writes = [
        "INSERT INTO t(s, v) VALUES ('one', randomblob(5000));",
        "UPDATE t SET v = randomblob(100) WHERE id % 3 = 0;",
        "BEGIN; DELETE FROM t WHERE id % 5 = 1; INSERT INTO t(s, v) VALUES ('two', randomblob(9000)); COMMIT;",
        "CREATE TABLE u(a, b); INSERT INTO u VALUES (1, randomblob(70000));",
    ];
    for sql in writes {
        sqlite3_plain(&db, sql).clean();
        wait_replica_matches(&mut rep, &s, &replica, &db);
    }
    rep.stop();

    // While stopped: write and truncate the WAL, so the restarted replicate sees a salt reset
    // and writes a full-database L0 file in the middle of the chain.
    sqlite3_plain(
        &db,
        "INSERT INTO t(s, v) VALUES ('offline', randomblob(1234));
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .ok();
    let before_restart = max_txid(&replica);
    let mut rep = Replicator::with_config(&cfg, &log);
    wait_txid_above(&mut rep, &replica, before_restart);
    for sql in [
        "DELETE FROM t WHERE id % 2 = 0;",
        "DROP TABLE u; INSERT INTO t(s, v) VALUES ('after', randomblob(20000));",
    ] {
        sqlite3_plain(&db, sql).clean();
        wait_replica_matches(&mut rep, &s, &replica, &db);
    }
    rep.stop();

    let files = list_ltx(&replica);
    eprintln!("official replica: {}", describe(&files));
    let reset = files
        .iter()
        .find(|f| f.level == 0 && f.min == before_restart + 1)
        .unwrap_or_else(|| {
            panic!(
                "no L0 file at TXID {:#x}: {}",
                before_restart + 1,
                describe(&files)
            )
        });
    assert!(
        litestream_tests::replica::is_full_database(&reset.path),
        "precondition: after a WAL reset the official replicate should write a full-database L0 \
         file ({}), pages: {:?}",
        reset.path.display(),
        litestream_tests::replica::ltx_page_numbers(&reset.path)
    );

    assert_restores_to(&s, &replica, &db, "latest");
    let max = max_txid(&replica);
    let txids: Vec<u64> = (1..=max).collect();
    compare_txid_restores(&s, &replica, &txids);
}

#[test]
fn restore_replica_of_official_replicate_randomized_workload() {
    let s = Scratch::new("official-random");
    let db = s.join("db.sqlite");
    let replica = s.join("replica");
    let w = Workload::random(WorkloadOptions {
        steps: 30,
        byte_budget: 12 << 20,
        // The official replicate holds a read transaction; FULL/RESTART/TRUNCATE checkpoints
        // would wait for it on the busy handler.
        checkpoints: false,
        ..WorkloadOptions::default()
    });
    eprintln!("{}", w.describe());
    create_with_page_size(&db, w.page_size);
    let log = s.join("replicate.log");
    // 0.5.17 can lose a transaction when its own size-triggered checkpoint runs while the
    // application writes: it checkpoints WAL frames it has not shipped yet, and the next L0 file
    // (new WAL, offset 32) then lacks those pages. Seen here with 512-byte pages: TXID 6 held only
    // the `_litestream_seq` page and growth pages, the chunk's DELETEs were in no file, and both
    // restores (official and ours) agreed on the stale state. This test is about reading what
    // the official writer wrote, so its checkpoints are kept out of the way.
    let cfg = Config::new()
        .db(&db, &replica)
        .db_key("min-checkpoint-page-count", "100000000")
        .db_key("checkpoint-interval", "24h")
        .write(&s.join("litestream.yml"));
    let mut rep = Replicator::with_config(&cfg, &log);
    wait_txid_above(&mut rep, &replica, 0);
    // Three chunks, each a separate shell session; wait for the replica between chunks.
    let chunk = w.steps.len().div_ceil(3);
    let cache = format!("PRAGMA cache_size={};\n", w.cache_size);
    for part in w.steps.chunks(chunk) {
        let out = sqlite3_plain(&db, &format!("{cache}{}", part.join("\n")));
        assert!(out.success(), "{}: {out}", w.describe());
        wait_replica_matches(&mut rep, &s, &replica, &db);
    }
    rep.stop();
    assert_restores_to(&s, &replica, &db, "latest");
    let max = max_txid(&replica);
    compare_txid_restores(&s, &replica, &[1, max / 2 + 1, max]);
}

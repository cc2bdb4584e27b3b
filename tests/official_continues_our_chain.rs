//! The official `litestream replicate` 0.5.17 takes over a replica our extension wrote: it is
//! started on a database restored from our replica, continues the TXID chain without a gap,
//! and both restores equal the final database.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`.

use std::time::Duration;

use litestream_tests::replica::describe;
use litestream_tests::*;

#[test]
fn official_replicate_continues_our_replica() {
    let s = Scratch::new("takeover");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let w = Workload::random(WorkloadOptions {
        steps: 20,
        byte_budget: 8 << 20,
        ..WorkloadOptions::default()
    });
    eprintln!("{}", w.describe());
    w.prepare_db(&db);
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("1s")
        .write(&s.join("litestream.yml"));
    let out = sqlite3_ext(
        &vfs_uri(&db, None),
        Some(&cfg),
        &format!("PRAGMA cache_size={};\n{}", w.cache_size, w.script()),
    );
    assert!(out.success(), "{}: {out}", w.describe());
    let ours_files = list_ltx(&replica);
    let our_max = max_txid(&replica);
    assert!(
        our_max >= 1,
        "our extension wrote no replica: {}",
        describe(&ours_files)
    );

    // Restore with our CLI, then let the official replicate run on the copy against the
    // same replica directory while new writes arrive.
    let db2 = s.join("restored.db");
    restore_ours(&file_url(&replica), &db2);
    assert_same_dump(&db2, &db, "our restore before the takeover");
    let log = s.join("replicate.log");
    let mut rep = Replicator::with_url(&db2, &file_url(&replica), &log);
    let mut last = our_max;
    for sql in [
        "CREATE TABLE IF NOT EXISTS after_takeover(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO after_takeover(v) VALUES (randomblob(3000));",
        "INSERT INTO after_takeover(v) SELECT randomblob(500) FROM after_takeover;",
        "UPDATE after_takeover SET v = randomblob(10);",
    ] {
        sqlite3_plain(&db2, sql).clean();
        let advanced = wait_until(Duration::from_secs(60), || max_txid(&replica) > last);
        rep.assert_running();
        assert!(
            advanced,
            "the official replicate wrote nothing above TXID {last:#x} on our replica: {}\nlog:\n{}",
            describe(&list_ltx(&replica)),
            rep.log()
        );
        last = max_txid(&replica);
    }
    let log_text = rep.stop();

    let files = list_ltx(&replica);
    eprintln!("replica after the takeover: {}", describe(&files));
    let gaps = coverage_gaps(&files);
    assert!(gaps.is_empty(), "TXID gaps {gaps:?}: {}", describe(&files));
    let first_new = files
        .iter()
        .filter(|f| f.min > our_max)
        .map(|f| f.min)
        .min();
    assert_eq!(
        first_new,
        Some(our_max + 1),
        "the official replicate must continue at our max TXID + 1 ({:#x}): {}\nlog:\n{log_text}",
        our_max + 1,
        describe(&files)
    );
    assert!(
        !log_text.contains("cannot verify wal state"),
        "official replicate could not adopt our last LTX file (WAL offset/size?):\n{log_text}"
    );
    assert_restores_to(&s, &replica, &db2, "after-takeover");
}

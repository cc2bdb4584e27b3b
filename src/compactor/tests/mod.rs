//! Compaction, snapshots and retention against a `file` replica holding synthetic databases:
//! whatever the jobs do, a restore must give the same bytes as the original chain.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::jobs::MAX_MERGE_INPUTS;
use super::merge::merge;
use super::*;
use crate::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use crate::replica::{FileReplica, LtxFileInfo, ReplicaClient};
use crate::restore::{restore, RestoreOptions, Target};

const PS: u32 = 512;

/// A database whose every TXID is one L0 file in a file replica.
struct Sim {
    dir: tempfile::TempDir,
    client: FileReplica,
    rng: fastrand::Rng,
    /// `states[t]`: the pages after TXID t (index 0 unused).
    states: Vec<Vec<Vec<u8>>>,
}

/// Random content, starting like a SQLite page 1 (restore checks that header).
fn page(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut p: Vec<u8> = (0..PS).map(|_| rng.u8(..)).collect();
    crate::restore::stamp_header(&mut p, PS);
    p
}

fn ts(txid: u64) -> i64 {
    1_700_000_000_000 + txid as i64 * 1000
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("replica"));
        Sim {
            dir,
            client,
            rng: fastrand::Rng::with_seed(seed),
            states: vec![Vec::new()],
        }
    }

    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    fn txid(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// Commits one transaction: a few pages change, sometimes the database grows or shrinks.
    fn commit(&mut self) {
        let txid = self.txid() + 1;
        let mut pages = self.states.last().unwrap().clone();
        let mut changed: Vec<u32> = Vec::new();
        if pages.is_empty() {
            for _ in 0..self.rng.usize(3..12) {
                pages.push(page(&mut self.rng));
            }
            changed = (1..=pages.len() as u32).collect();
        } else {
            match self.rng.u32(..10) {
                0 if pages.len() > 2 => {
                    let n = self.rng.usize(1..pages.len());
                    pages.truncate(n);
                    changed.push(1);
                }
                1 => {
                    for _ in 0..self.rng.usize(1..6) {
                        pages.push(page(&mut self.rng));
                        changed.push(pages.len() as u32);
                    }
                }
                _ => {}
            }
            for _ in 0..self.rng.usize(1..4) {
                changed.push(self.rng.u32(1..=pages.len() as u32));
            }
            for &p in &changed {
                pages[p as usize - 1] = page(&mut self.rng);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let contents: Vec<(u32, Vec<u8>)> = changed
            .iter()
            .map(|&p| (p, pages[p as usize - 1].clone()))
            .collect();
        put_ltx(
            &self.client,
            0,
            txid,
            txid,
            pages.len() as u32,
            &contents,
            ts(txid),
        );
        self.states.push(pages);
    }

    fn restored(&self, target: Target, name: &str) -> Vec<u8> {
        let out = self.dir.path().join(name);
        restore(
            &self.client,
            &RestoreOptions {
                target,
                ..RestoreOptions::new(&out)
            },
        )
        .unwrap();
        std::fs::read(&out).unwrap()
    }

    fn expect(&self, txid: u64) -> Vec<u8> {
        self.states[txid as usize].concat()
    }

    fn levels(&self) -> Vec<(u8, u64, u64)> {
        self.client
            .list_all()
            .unwrap()
            .iter()
            .map(|f| (f.level, f.min_txid, f.max_txid))
            .collect()
    }
}

fn put_ltx(
    client: &FileReplica,
    level: u8,
    min: u64,
    max: u64,
    commit: u32,
    pages: &[(u32, Vec<u8>)],
    timestamp_ms: i64,
) {
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: PS,
        commit,
        min_txid: min,
        max_txid: max,
        timestamp_ms,
        ..Header::default()
    };
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    for (p, data) in pages {
        enc.write_page(*p, data).unwrap();
    }
    let (bytes, _) = enc.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    std::fs::write(&src, bytes).unwrap();
    client.put(level, min, max, &src, timestamp_ms).unwrap();
}

fn sim_with(seed: u64, n: usize) -> Sim {
    let mut s = Sim::new(seed);
    for _ in 0..n {
        s.commit();
    }
    s
}

#[test]
fn merged_level_restores_like_its_inputs() {
    for seed in 0..20 {
        let mut s = sim_with(seed, 12);
        let written = compact_level(&s.client, 1, &s.work(), None).unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].min_txid, written[0].max_txid), (1, 12));
        // The merged file alone restores the latest state.
        let l0 = s.client.list(0).unwrap();
        s.client.delete(&l0).unwrap();
        assert_eq!(
            s.restored(Target::Latest, "a.db"),
            s.expect(12),
            "seed {seed}"
        );
        // Timestamp of the merge is the newest input's.
        let f = &s.client.list(1).unwrap()[0];
        assert_eq!(
            f.created_at,
            UNIX_EPOCH + Duration::from_millis(ts(12) as u64)
        );
        // More L0 files: the next merge starts after what level 1 holds.
        for _ in 0..5 {
            s.commit();
        }
        assert!(compact_level(&s.client, 2, &s.work(), None).unwrap().len() == 1);
        let written = compact_level(&s.client, 1, &s.work(), None).unwrap();
        assert_eq!((written[0].min_txid, written[0].max_txid), (13, 17));
        assert!(
            compact_level(&s.client, 1, &s.work(), None)
                .unwrap()
                .is_empty(),
            "nothing new"
        );
        let written = compact_level(&s.client, 2, &s.work(), None).unwrap();
        assert_eq!((written[0].min_txid, written[0].max_txid), (13, 17));
        let l1 = s.client.list(1).unwrap();
        let l0 = s.client.list(0).unwrap();
        s.client.delete(&l1).unwrap();
        s.client.delete(&l0).unwrap();
        assert_eq!(s.levels(), vec![(2, 1, 12), (2, 13, 17)]);
        assert_eq!(
            s.restored(Target::Latest, "b.db"),
            s.expect(17),
            "seed {seed}"
        );
    }
}

#[test]
fn level_three_merges_level_two() {
    let mut s = sim_with(7, 4);
    for level in 1..=3 {
        compact_level(&s.client, level, &s.work(), None).unwrap();
    }
    s.commit();
    for level in 1..=3 {
        compact_level(&s.client, level, &s.work(), None).unwrap();
    }
    let l3: Vec<_> = s.levels().into_iter().filter(|l| l.0 == 3).collect();
    assert_eq!(l3, vec![(3, 1, 4), (3, 5, 5)]);
    for level in 0..=2 {
        let files = s.client.list(level).unwrap();
        s.client.delete(&files).unwrap();
    }
    assert_eq!(s.restored(Target::Latest, "c.db"), s.expect(5));
    assert_eq!(s.restored(Target::TxId(4), "d.db"), s.expect(4));
}

#[test]
fn snapshot_is_built_from_the_replica_and_restores_alone() {
    for seed in 100..110 {
        let mut s = sim_with(seed, 6);
        compact_level(&s.client, 1, &s.work(), None).unwrap();
        for _ in 0..4 {
            s.commit();
        }
        let snap = snapshot(&s.client, &s.work(), None, None)
            .unwrap()
            .expect("a snapshot");
        assert_eq!((snap.level, snap.min_txid, snap.max_txid), (9, 1, 10));
        assert!(
            snapshot(&s.client, &s.work(), None, None)
                .unwrap()
                .is_none(),
            "already covered"
        );
        // A newer TXID, but a snapshot made since the last boundary: skipped too.
        s.commit();
        let boundary = UNIX_EPOCH + Duration::from_millis(ts(10) as u64);
        assert!(snapshot(&s.client, &s.work(), Some(boundary), None)
            .unwrap()
            .is_none());
        let later = boundary + Duration::from_millis(1);
        let snap = snapshot(&s.client, &s.work(), Some(later), None)
            .unwrap()
            .unwrap();
        assert_eq!(snap.max_txid, 11);
        let old = s.client.list(9).unwrap();
        s.client.delete(&old[..1]).unwrap();
        let others: Vec<LtxFileInfo> = s
            .client
            .list_all()
            .unwrap()
            .into_iter()
            .filter(|f| f.level != 9)
            .collect();
        s.client.delete(&others).unwrap();
        assert_eq!(
            s.restored(Target::Latest, "s.db"),
            s.expect(11),
            "seed {seed}"
        );
        // It holds every page 1..=commit, in order.
        let bytes = std::fs::read(s.client.file_path(9, 1, 11)).unwrap();
        let mut dec = crate::ltx::Decoder::new(&bytes[..]).unwrap();
        let mut buf = vec![0u8; PS as usize];
        let mut n = 0;
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            n += 1;
            assert_eq!(p, n);
        }
        assert_eq!(n, s.states[11].len() as u32);
    }
}

#[test]
fn merge_refuses_a_corrupt_input_and_stores_nothing() {
    let s = sim_with(3, 4);
    let p = s.client.file_path(0, 3, 3);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&p, b).unwrap();
    assert!(compact_level(&s.client, 1, &s.work(), None).is_err());
    assert!(s.client.list(1).unwrap().is_empty());
    assert!(snapshot(&s.client, &s.work(), None, None).is_err());
    assert!(s.client.list(9).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(s.work()).unwrap().count(),
        0,
        "temp files removed"
    );
}

#[test]
fn a_gap_in_the_source_level_is_merged_up_to() {
    let s = sim_with(5, 5);
    let f3 = s.client.list(0).unwrap()[2].clone();
    s.client.delete(&[f3]).unwrap();
    let written = compact_level(&s.client, 1, &s.work(), None).unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!((written[0].min_txid, written[0].max_txid), (1, 2));
}

#[test]
fn big_backlogs_are_merged_in_several_files() {
    let s = sim_with(9, MAX_MERGE_INPUTS + 3);
    let written = compact_level(&s.client, 1, &s.work(), None).unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[1].max_txid, MAX_MERGE_INPUTS as u64 + 3);
    let l0 = s.client.list(0).unwrap();
    s.client.delete(&l0).unwrap();
    assert_eq!(s.restored(Target::Latest, "big.db"), s.expect(s.txid()));
}

fn age(s: &Sim, secs_after_last: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(ts(s.txid()) as u64) + Duration::from_secs(secs_after_last)
}

#[test]
fn retention_keeps_the_chain_restorable_and_pitr_works_after_it() {
    let mut s = sim_with(11, 6);
    compact_level(&s.client, 1, &s.work(), None).unwrap();
    snapshot(&s.client, &s.work(), None, None).unwrap().unwrap(); // 9/1-6
    for _ in 0..6 {
        s.commit();
    }
    compact_level(&s.client, 1, &s.work(), None).unwrap(); // 1/7-12
    snapshot(&s.client, &s.work(), None, None).unwrap().unwrap(); // 9/1-12
    for _ in 0..3 {
        s.commit(); // L0 13..15
    }
    // L0 retention: files merged into L1 and old enough go; 13..15 are not merged.
    let gone = enforce_l0_retention(&s.client, Duration::from_secs(1), age(&s, 100)).unwrap();
    assert_eq!(gone.len(), 12);
    assert_eq!(s.client.list(0).unwrap().len(), 3);
    // Snapshot retention: 9/1-6 (made at TXID 6's time) expires, 9/1-12 is the newest.
    let retention = Duration::from_secs(5);
    let gone = enforce_snapshot_retention(&s.client, retention, age(&s, 0)).unwrap();
    let gone: Vec<_> = gone
        .iter()
        .map(|f| (f.level, f.min_txid, f.max_txid))
        .collect();
    // Level files strictly below the deleted snapshot's TXID would go; 1/1-6 ends at it.
    assert_eq!(gone, vec![(9, 1, 6)]);
    assert_eq!(
        s.levels(),
        vec![
            (0, 13, 13),
            (0, 14, 14),
            (0, 15, 15),
            (1, 1, 6),
            (1, 7, 12),
            (9, 1, 12)
        ]
    );
    assert_eq!(s.restored(Target::Latest, "l.db"), s.expect(15));
    assert_eq!(s.restored(Target::TxId(14), "t14.db"), s.expect(14));
    assert_eq!(s.restored(Target::TxId(12), "t12.db"), s.expect(12));
    let at14 = UNIX_EPOCH + Duration::from_millis(ts(14) as u64 + 1);
    assert_eq!(s.restored(Target::Timestamp(at14), "ts14.db"), s.expect(14));
    // Before the oldest snapshot: out of range, naming the range.
    let out = s.dir.path().join("old.db");
    let l1 = s.client.list(1).unwrap();
    s.client.delete(&l1[..1]).unwrap();
    let err = restore(
        &s.client,
        &RestoreOptions {
            target: Target::TxId(5),
            ..RestoreOptions::new(&out)
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("000000000000000c") && msg.contains("000000000000000f"),
        "{msg}"
    );
    // The newest snapshot survives any age; nothing newer than what restore needs goes.
    let gone = enforce_snapshot_retention(&s.client, retention, age(&s, 1_000_000)).unwrap();
    assert!(gone.is_empty());
    assert_eq!(s.restored(Target::Latest, "l2.db"), s.expect(15));
}

#[test]
fn retention_never_breaks_the_latest_restore() {
    // L0 only (no level 1): nothing is merged, so nothing may go.
    let s = sim_with(13, 5);
    assert!(
        enforce_l0_retention(&s.client, Duration::from_secs(1), age(&s, 1000))
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.client.list(0).unwrap().len(), 5);
    // A level-1 file whose L0 inputs are partly missing from L1's coverage: refused as a whole.
    let s = sim_with(14, 5);
    compact_level(&s.client, 1, &s.work(), None).unwrap();
    let l1 = s.client.list(1).unwrap();
    s.client.delete(&l1).unwrap();
    put_ltx(
        &s.client,
        1,
        2,
        5,
        s.states[5].len() as u32,
        &[(1, s.states[5][0].clone())],
        ts(5),
    );
    assert!(
        enforce_l0_retention(&s.client, Duration::from_secs(1), age(&s, 1000))
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.client.list(0).unwrap().len(), 5);
}

#[test]
fn merge_keeps_page_size_and_drops_pages_past_the_last_commit() {
    let s = Sim::new(1);
    let p = |b: u8| vec![b; PS as usize];
    put_ltx(
        &s.client,
        0,
        1,
        1,
        4,
        &[(1, p(1)), (2, p(2)), (3, p(3)), (4, p(4))],
        ts(1),
    );
    put_ltx(&s.client, 0, 2, 2, 2, &[(1, p(5))], ts(2));
    put_ltx(&s.client, 0, 3, 3, 3, &[(3, p(6))], ts(3));
    let out = s.dir.path().join("m.ltx");
    std::fs::create_dir_all(s.work()).unwrap();
    let files = s.client.list(0).unwrap();
    let m = merge(&s.client, &files, &out, &s.work(), None).unwrap();
    assert_eq!(
        (m.header.min_txid, m.header.max_txid, m.header.commit),
        (1, 3, 3)
    );
    assert_eq!(m.pages, 3);
    let bytes = std::fs::read(&out).unwrap();
    let mut dec = crate::ltx::Decoder::new(&bytes[..]).unwrap();
    let mut buf = vec![0u8; PS as usize];
    let mut got = Vec::new();
    while let Some(pg) = dec.next_page(&mut buf).unwrap() {
        got.push((pg, buf[0]));
    }
    assert_eq!(got, vec![(1, 5), (2, 2), (3, 6)]);
    assert_eq!(dec.header().timestamp_ms, ts(3));
    assert_eq!((dec.header().wal_offset, dec.header().wal_size), (0, 0));
}

#[test]
fn merge_refuses_page_size_changes_and_gaps() {
    let s = Sim::new(2);
    let p = vec![1u8; PS as usize];
    put_ltx(&s.client, 0, 1, 1, 1, &[(1, p.clone())], ts(1));
    put_ltx(&s.client, 0, 3, 3, 1, &[(1, p)], ts(3));
    std::fs::create_dir_all(s.work()).unwrap();
    let files = s.client.list(0).unwrap();
    let err = merge(&s.client, &files, &s.dir.path().join("x"), &s.work(), None).unwrap_err();
    assert!(err.to_string().contains("do not continue"), "{err}");
    let _ = Path::new("");
}

#[test]
fn jobs_write_nothing_while_another_writer_holds_the_lease() {
    use crate::fencing::{Lease, LEASE_OBJECT};
    use crate::replica::WriteCondition;
    let s = sim_with(21, 4);
    let client: std::sync::Arc<dyn ReplicaClient> =
        std::sync::Arc::new(FileReplica::new(s.client.root()));
    let db = s.dir.path().join("app.db");
    let fenced = fenced::Fenced {
        db: &db,
        client: &client,
    };
    let theirs = Lease {
        owner: "elsewhere/1/1/x".into(),
        host: "elsewhere".into(),
        pid: 1,
        pid_ns: String::new(),
        pid_start: 1,
        db: "/elsewhere.db".into(),
        acquired_ms: 0,
        expires_ms: i64::MAX,
    };
    client
        .write_object(LEASE_OBJECT, &theirs.encode(), WriteCondition::Always)
        .unwrap();
    // Reads work, writes are refused: nothing is stored or deleted.
    let err = compact_level(&fenced, 1, &s.work(), None).unwrap_err();
    assert!(
        err.to_string().contains("being written by another process"),
        "{err}"
    );
    assert!(snapshot(&fenced, &s.work(), None, None).is_err());
    assert_eq!(s.client.list_all().unwrap().len(), 4);
    // Once it is released, this process takes over and the jobs write.
    client.delete_object(LEASE_OBJECT).unwrap();
    assert_eq!(compact_level(&fenced, 1, &s.work(), None).unwrap().len(), 1);
}

/// Tests that bound the requests the jobs make.
mod requests;

/// L0 retention, returning only the files deleted.
fn enforce_l0_retention(
    client: &dyn ReplicaClient,
    retention: Duration,
    now: std::time::SystemTime,
) -> Result<Vec<LtxFileInfo>, CompactError> {
    l0_retention_pass(client, retention, now).map(|(deleted, _)| deleted)
}

//! How many requests the compactor's jobs make: the levels L0 retention lists, and the L0
//! files a merge reads from local copies instead of the replica.

use super::*;
use crate::l0_cache::L0Cache;
use crate::replica::counting::Counting;
use crate::staging::MetaDir;

#[test]
fn l0_retention_lists_levels_0_and_1_and_checks_against_snapshots_only_when_deleting() {
    let s = sim_with(21, 6);
    let client = Counting::new(FileReplica::new(s.dir.path().join("replica")));
    // Nothing merged into L1 yet: nothing to delete, two LISTs.
    let (gone, _) = l0_retention_pass(&client, Duration::from_secs(1), age(&s, 1000)).unwrap();
    assert!(gone.is_empty());
    assert_eq!(client.listed(), vec![0, 1]);
    // L1 covers 1..=6: L0 1..=5 go, checked against levels 0, 1 and 9.
    compact_level(&s.client, 1, &s.work(), None).unwrap();
    let client = Counting::new(FileReplica::new(s.dir.path().join("replica")));
    let (gone, _) = l0_retention_pass(&client, Duration::from_secs(1), age(&s, 1000)).unwrap();
    assert_eq!(gone.len(), 5);
    assert_eq!(client.listed(), vec![0, 1, 9]);
    assert_eq!(s.restored(Target::Latest, "after-l0.db"), s.expect(6));

    // L1 starts at TXID 3 and an L2 file holds 1..=2: levels 0, 1 and 9 cannot prove the
    // restore, the whole replica can.
    let s = sim_with(22, 6);
    compact_level(&s.client, 1, &s.work(), None).unwrap();
    compact_level(&s.client, 2, &s.work(), None).unwrap();
    let l1 = s.client.list(1).unwrap();
    s.client.delete(&l1).unwrap();
    let l2 = s.client.list(2).unwrap();
    s.client.delete(&l2).unwrap();
    let every_page =
        |t: usize| -> Vec<(u32, Vec<u8>)> { (1u32..).zip(s.states[t].iter().cloned()).collect() };
    put_ltx(
        &s.client,
        2,
        1,
        2,
        s.states[2].len() as u32,
        &every_page(2),
        ts(2),
    );
    put_ltx(
        &s.client,
        1,
        3,
        6,
        s.states[6].len() as u32,
        &every_page(6),
        ts(6),
    );
    let client = Counting::new(FileReplica::new(s.dir.path().join("replica")));
    let (gone, _) = l0_retention_pass(&client, Duration::from_secs(1), age(&s, 1000)).unwrap();
    assert_eq!(gone.len(), 5);
    assert_eq!(client.listed(), vec![0, 1, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(
        s.restored(Target::Latest, "after-full-check.db"),
        s.expect(6)
    );
}

#[test]
fn l1_merge_reads_cached_l0_copies_and_still_verifies_them() {
    let s = sim_with(23, 8);
    let cache = L0Cache::new(&MetaDir {
        root: s.dir.path().join("meta"),
    });
    let l0 = s.client.list(0).unwrap();
    let copy = s.dir.path().join("copy.ltx");
    for f in &l0[..6] {
        std::fs::copy(s.client.key(0, f.min_txid, f.max_txid), &copy).unwrap();
        cache.keep(&copy, f.min_txid, f.max_txid);
    }
    // A damaged copy of the right size is read, and the merge refuses it.
    let f = &l0[6];
    let mut bytes = std::fs::read(s.client.key(0, f.min_txid, f.max_txid)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    cache.keep(&copy, f.min_txid, f.max_txid);
    let client = Counting::new(FileReplica::new(s.dir.path().join("replica")));
    assert!(compact_level(&client, 1, &s.work(), Some(&cache)).is_err());
    assert!(s.client.list(1).unwrap().is_empty());

    // Without it: six inputs from the cache, two from the replica.
    std::fs::remove_file(
        s.dir
            .path()
            .join("meta/uploaded")
            .join(crate::ltx::format_file_name(7, 7)),
    )
    .unwrap();
    let client = Counting::new(FileReplica::new(s.dir.path().join("replica")));
    compact_level(&client, 1, &s.work(), Some(&cache)).unwrap();
    assert_eq!(
        client.counts().1,
        2,
        "only TXIDs 7 and 8 are read from the replica"
    );
    let l0 = s.client.list(0).unwrap();
    s.client.delete(&l0[..7]).unwrap();
    assert_eq!(s.restored(Target::Latest, "from-l1.db"), s.expect(8));
}

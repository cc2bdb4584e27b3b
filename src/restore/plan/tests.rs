use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn f(level: u8, min: TxId, max: TxId, secs: u64) -> LtxFileInfo {
    LtxFileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size: 100,
        created_at: at(secs),
    }
}

fn names(p: &[LtxFileInfo]) -> Vec<(u8, TxId, TxId)> {
    p.iter()
        .map(|f| (f.level, f.min_txid, f.max_txid))
        .collect()
}

/// The exp1 replica files that the minimal-set cases of spec §2.3 were copied from.
fn l0(n: TxId) -> LtxFileInfo {
    f(0, n, n, n * 2)
}

#[test]
fn case_a_l0_only() {
    let files: Vec<_> = (1..=5).map(l0).collect();
    let p = plan(&files, &Target::Latest).unwrap();
    assert_eq!(names(&p), (1..=5).map(|n| (0, n, n)).collect::<Vec<_>>());
}

#[test]
fn case_b_single_l0_snapshot() {
    assert_eq!(
        names(&plan(&[l0(1)], &Target::Latest).unwrap()),
        vec![(0, 1, 1)]
    );
}

#[test]
fn case_c_single_l9() {
    let p = plan(&[f(9, 1, 1, 1)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(9, 1, 1)]);
}

#[test]
fn case_d_single_l1() {
    let p = plan(&[f(1, 1, 4, 8)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(1, 1, 4)]);
}

#[test]
fn case_g_l1_then_l0() {
    let p = plan(&[l0(5), f(1, 1, 4, 8)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(1, 1, 4), (0, 5, 5)]);
}

#[test]
fn case_h_unconfigured_levels() {
    let p = plan(&[f(8, 5, 5, 10), f(5, 1, 4, 8)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(5, 1, 4), (8, 5, 5)]);
}

#[test]
fn case_e_no_file_starting_at_one() {
    let files: Vec<_> = (2..=5).map(l0).collect();
    let err = plan(&files, &Target::Latest).unwrap_err();
    assert_eq!(err, PlanError::NoFiles);
    assert_eq!(err.to_string(), "no matching backup files available");
}

#[test]
fn case_f_gap_is_an_error_for_latest() {
    let files = vec![f(9, 1, 1, 2), l0(3), l0(4), l0(5)];
    let err = plan(&files, &Target::Latest).unwrap_err();
    assert_eq!(err, PlanError::NonContiguous { have: 1, next: 3 });
    assert!(err.to_string().contains(
        "non-contiguous ltx files: have up to 0000000000000001 but next file starts at \
         0000000000000003"
    ));
}

#[test]
fn case_f_gap_with_timestamp_stops_silently() {
    let files = vec![f(9, 1, 1, 2), l0(3), l0(4), l0(5)];
    // After all file times but not after the newest: the newest is excluded, the gap is not
    // an error, and the restore stops at TXID 1.
    let p = plan(&files, &Target::Timestamp(at(10))).unwrap();
    assert_eq!(names(&p), vec![(9, 1, 1)]);
}

#[test]
fn case_i_snapshot_level_file_not_starting_at_one() {
    let files = vec![f(9, 5, 5, 10), f(9, 1, 4, 8)];
    let err = plan(&files, &Target::Latest).unwrap_err();
    assert_eq!(
        err,
        PlanError::NotSnapshot {
            level: 9,
            min: 5,
            max: 5
        }
    );
    assert!(err
        .to_string()
        .contains("0000000000000005-0000000000000005"));
}

#[test]
fn case_j_and_k_plan_by_name() {
    // J and K fail when the files are read (headers, checksums); the plan uses names only.
    let files = vec![l0(1), f(0, 2, 3, 6), l0(4)];
    assert_eq!(
        names(&plan(&files, &Target::Latest).unwrap()),
        vec![(0, 1, 1), (0, 2, 3), (0, 4, 4)]
    );
}

/// Spec §1.3, exp2: the final replica after compactions, snapshots and retention.
fn exp2() -> Vec<LtxFileInfo> {
    let mut v = vec![f(0, 0x53, 0x53, 300)];
    let l1 = [
        (0x31, 0x35),
        (0x36, 0x3a),
        (0x3b, 0x3f),
        (0x40, 0x44),
        (0x45, 0x49),
        (0x4a, 0x4e),
        (0x4f, 0x52),
        (0x53, 0x53),
    ];
    for (min, max) in l1 {
        v.push(f(1, min, max, max * 2));
    }
    for (min, max) in [(0x31, 0x3b), (0x3c, 0x4a), (0x4b, 0x50), (0x51, 0x53)] {
        v.push(f(2, min, max, max * 2));
    }
    v.push(f(9, 1, 0x45, 0x45 * 2));
    v.push(f(9, 1, 0x52, 0x52 * 2));
    v
}

#[test]
fn exp2_latest_picks_snapshot_then_l2() {
    let p = plan(&exp2(), &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(9, 1, 0x52), (2, 0x51, 0x53)]);
}

#[test]
fn exp2_txid_before_oldest_snapshot_fails() {
    let err = plan(&exp2(), &Target::TxId(0x40)).unwrap_err();
    let PlanError::TxIdOutOfRange { requested, range } = err.clone() else {
        panic!("want TxIdOutOfRange, got {err:?}");
    };
    assert_eq!(requested, 0x40);
    assert_eq!((range.oldest_txid, range.newest_txid), (0x45, 0x53));
    let msg = err.to_string();
    assert!(
        msg.starts_with("no matching backup files available"),
        "{msg}"
    );
    for want in ["0000000000000040", "0000000000000045", "0000000000000053"] {
        assert!(msg.contains(want), "{want} missing from: {msg}");
    }
}

#[test]
fn exp2_txid_uses_older_snapshot_and_levels() {
    let p = plan(&exp2(), &Target::TxId(0x4e)).unwrap();
    // 2/3c-4a reaches furthest from 0x45 (min <= 0x46), then 1/4a-4e.
    assert_eq!(
        names(&p),
        vec![(9, 1, 0x45), (2, 0x3c, 0x4a), (1, 0x4a, 0x4e)]
    );
    // 0x4c is not a restorable point (L0 files were merged away): the newest state before it.
    let p = plan(&exp2(), &Target::TxId(0x4c)).unwrap();
    assert_eq!(names(&p), vec![(9, 1, 0x45), (2, 0x3c, 0x4a)]);
}

#[test]
fn txid_stops_at_target() {
    let files: Vec<_> = (1..=5).map(l0).collect();
    assert_eq!(
        names(&plan(&files, &Target::TxId(3)).unwrap()).last(),
        Some(&(0, 3, 3))
    );
    assert_eq!(plan(&files, &Target::TxId(3)).unwrap().len(), 3);
    // A target beyond the newest file is outside the history.
    assert!(matches!(
        plan(&files, &Target::TxId(9)).unwrap_err(),
        PlanError::TxIdOutOfRange { requested: 9, range } if range.newest_txid == 5 && range.oldest_txid == 1
    ));
}

#[test]
fn timestamp_uses_files_strictly_before() {
    let files: Vec<_> = (1..=5).map(l0).collect(); // times 2,4,6,8,10
    assert_eq!(plan(&files, &Target::Timestamp(at(6))).unwrap().len(), 2);
    assert_eq!(plan(&files, &Target::Timestamp(at(7))).unwrap().len(), 3);
    assert_eq!(plan(&files, &Target::Timestamp(at(10))).unwrap().len(), 4);
    // Exactly the oldest time: nothing is strictly before it.
    assert!(matches!(
        plan(&files, &Target::Timestamp(at(2))).unwrap_err(),
        PlanError::TimestampOutOfRange { .. }
    ));
}

/// After retention: the oldest snapshot ends at 0x20, L0 files below 0x31 were merged into L1,
/// and older snapshots and level files are gone.
fn retained() -> Vec<LtxFileInfo> {
    vec![
        f(9, 1, 0x20, 100),
        f(9, 1, 0x2c, 160),
        f(1, 0x21, 0x25, 120),
        f(1, 0x26, 0x2c, 150),
        f(1, 0x2d, 0x30, 170),
        f(0, 0x31, 0x31, 180),
        f(0, 0x32, 0x32, 190),
    ]
}

#[test]
fn restorable_range_after_retention() {
    let r = restorable_range(&retained()).unwrap();
    assert_eq!((r.oldest_txid, r.newest_txid), (0x20, 0x32));
    assert_eq!((r.oldest_time, r.newest_time), (at(100), at(190)));
    assert_eq!(restorable_range(&[f(0, 2, 2, 1)]), None);
    assert_eq!(restorable_range(&[]), None);
}

#[test]
fn pitr_after_retention_gives_the_newest_state_at_or_before() {
    let files = retained();
    let ends = |t: Target| names(&plan(&files, &t).unwrap()).last().unwrap().2;
    assert_eq!(ends(Target::TxId(0x20)), 0x20);
    assert_eq!(ends(Target::TxId(0x23)), 0x20); // inside an L1 file: the state before it
    assert_eq!(ends(Target::TxId(0x25)), 0x25);
    assert_eq!(ends(Target::TxId(0x2e)), 0x2c); // from the newer snapshot
    assert_eq!(ends(Target::TxId(0x31)), 0x31);
    assert_eq!(ends(Target::Timestamp(at(101))), 0x20);
    assert_eq!(ends(Target::Timestamp(at(121))), 0x25);
    assert_eq!(ends(Target::Timestamp(at(161))), 0x2c);
    assert_eq!(ends(Target::Timestamp(at(190))), 0x31);
    for t in [Target::TxId(0x1f), Target::TxId(1), Target::TxId(0x33)] {
        let err = plan(&files, &t).unwrap_err();
        assert!(
            matches!(err, PlanError::TxIdOutOfRange { .. }),
            "{t:?}: {err}"
        );
    }
    for t in [at(99), at(100), at(191)] {
        let err = plan(&files, &Target::Timestamp(t)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, PlanError::TimestampOutOfRange { .. }),
            "{msg}"
        );
        assert!(
            msg.contains("2023-11-14T22:15:00.000Z"),
            "oldest named: {msg}"
        );
        assert!(
            msg.contains("2023-11-14T22:16:30.000Z"),
            "newest named: {msg}"
        );
    }
}

#[test]
fn timestamp_outside_range_is_an_error() {
    let files: Vec<_> = (1..=5).map(l0).collect();
    for t in [at(1), at(11), UNIX_EPOCH] {
        let err = plan(&files, &Target::Timestamp(t)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("timestamp does not exist"), "{msg}");
        assert!(
            msg.contains("2023-11-14T22:13:22.000Z"),
            "oldest named: {msg}"
        );
        assert!(
            msg.contains("2023-11-14T22:13:30.000Z"),
            "newest named: {msg}"
        );
    }
}

#[test]
fn empty_replica() {
    assert_eq!(plan(&[], &Target::Latest).unwrap_err(), PlanError::NoFiles);
    assert_eq!(
        plan(&[], &Target::Timestamp(at(1))).unwrap_err(),
        PlanError::NoFiles
    );
    // Nothing starts at TXID 1: nothing is restorable at any target.
    assert_eq!(
        plan(&[f(0, 2, 2, 1)], &Target::TxId(2)).unwrap_err(),
        PlanError::NoFiles
    );
    // Levels above 9 are never looked at.
    assert_eq!(
        plan(&[f(10, 1, 1, 0)], &Target::Latest).unwrap_err(),
        PlanError::NoFiles
    );
}

#[test]
fn full_db_l0_mid_chain() {
    // A WAL reset: L0 6 holds every page but min != 1; it simply continues the chain.
    let mut files: Vec<_> = (1..=8).map(l0).collect();
    files.push(f(1, 1, 4, 8));
    files.push(f(2, 1, 4, 8));
    let p = plan(&files, &Target::Latest).unwrap();
    // Ties on max prefer the smaller min, then the higher level.
    assert_eq!(
        names(&p),
        vec![(2, 1, 4), (0, 5, 5), (0, 6, 6), (0, 7, 7), (0, 8, 8)]
    );
}

#[test]
fn tie_breaks() {
    // Same range on two levels: the higher level wins.
    let p = plan(&[f(1, 1, 3, 5), f(3, 1, 3, 5)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(3, 1, 3)]);
    // Same max, different min: the smaller min wins even on a lower level.
    let p = plan(
        &[f(0, 1, 1, 1), f(4, 2, 3, 5), f(1, 1, 3, 5)],
        &Target::Latest,
    )
    .unwrap();
    assert_eq!(names(&p), vec![(1, 1, 3)]);
    // Largest max wins over anything else.
    let p = plan(&[f(8, 1, 2, 1), f(0, 1, 3, 5)], &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(0, 1, 3)]);
}

#[test]
fn overlapping_files_jump_ahead() {
    // After 1-4, 3-9 qualifies (min <= 5, max > 4) and beats 5-5.
    let files = vec![f(1, 1, 4, 1), l0(5), f(2, 3, 9, 9), l0(10)];
    let p = plan(&files, &Target::Latest).unwrap();
    assert_eq!(names(&p), vec![(1, 1, 4), (2, 3, 9), (0, 10, 10)]);
}

// ----- property tests -----

/// A random replica: L0 segments covering 1..=n, higher-level files spanning runs of segments,
/// snapshots at segment ends, and L0 files dropped when a higher level covers them.
fn replica(allow_drops: bool) -> impl Strategy<Value = (Vec<LtxFileInfo>, Vec<TxId>)> {
    (
        prop::collection::vec(1u64..4, 1..40),
        prop::collection::vec((1u8..9, any::<prop::sample::Index>(), 0usize..6), 0..12),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::vec(any::<bool>(), 40),
    )
        .prop_map(move |(lens, spans, snaps, drops)| {
            let mut bounds = Vec::new(); // (min, max) per segment
            let mut next = 1;
            for len in lens {
                bounds.push((next, next + len - 1));
                next += len;
            }
            let seg = |i: usize| bounds[i];
            let t = |max: TxId| max * 3;
            let mut covered = vec![false; bounds.len()];
            let mut files = Vec::new();
            for (level, start, width) in spans {
                let a = start.index(bounds.len());
                let b = (a + width).min(bounds.len() - 1);
                files.push(f(level, seg(a).0, seg(b).1, t(seg(b).1)));
                covered[a..=b].iter_mut().for_each(|c| *c = true);
            }
            for s in snaps {
                let b = s.index(bounds.len());
                files.push(f(9, 1, seg(b).1, t(seg(b).1) + 1));
            }
            for (i, (min, max)) in bounds.iter().enumerate() {
                // Never drop the newest L0 file (retention keeps it).
                let dropped = allow_drops && covered[i] && drops[i % drops.len()];
                if !dropped || i + 1 == bounds.len() {
                    files.push(f(0, *min, *max, t(*max)));
                }
            }
            fastrand::Rng::with_seed(files.len() as u64).shuffle(&mut files);
            let ends = bounds.iter().map(|b| b.1).collect();
            (files, ends)
        })
}

fn assert_contiguous(p: &[LtxFileInfo]) {
    assert_eq!(p[0].min_txid, 1, "plan starts at 1: {:?}", names(p));
    for w in p.windows(2) {
        assert!(w[1].min_txid <= w[0].max_txid + 1, "gap: {:?}", names(p));
        assert!(w[1].max_txid > w[0].max_txid, "no progress: {:?}", names(p));
    }
}

proptest! {
    #[test]
    fn latest_plan_is_contiguous_and_complete((files, ends) in replica(true)) {
        let p = plan(&files, &Target::Latest).unwrap();
        assert_contiguous(&p);
        prop_assert_eq!(p.last().unwrap().max_txid, *ends.last().unwrap());
        prop_assert!(p[1..].iter().all(|f| f.level < SNAPSHOT_LEVEL));
    }

    #[test]
    fn txid_plan_ends_at_target((files, ends) in replica(false), pick in any::<prop::sample::Index>()) {
        let target = ends[pick.index(ends.len())];
        let p = plan(&files, &Target::TxId(target)).unwrap();
        assert_contiguous(&p);
        prop_assert_eq!(p.last().unwrap().max_txid, target);
    }

    #[test]
    fn timestamp_plan_uses_only_older_files(
        (files, ends) in replica(false),
        pick in any::<prop::sample::Index>(),
    ) {
        let end = ends[pick.index(ends.len())];
        // Just after every file ending at or before `end` was made (times are 3 * max + 0..1).
        let ts = at(end * 3 + 2);
        let newest = files.iter().map(|f| f.created_at).max().unwrap();
        match plan(&files, &Target::Timestamp(ts)) {
            Ok(p) => {
                assert_contiguous(&p);
                prop_assert!(p.iter().all(|f| f.created_at < ts));
                prop_assert_eq!(p.last().unwrap().max_txid, end);
            }
            Err(PlanError::TimestampOutOfRange { .. }) => prop_assert!(ts > newest),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

#[test]
fn continuation_follows_l0_and_bridges_gaps_from_higher_levels() {
    // L0 5..=9 remain; 3..=4 were compacted into L1 and deleted from L0.
    let mut files: Vec<_> = (5..=9).map(l0).collect();
    files.push(f(1, 1, 4, 8));
    files.push(f(9, 1, 6, 12));
    // Resuming at 2: the L1 file 1..=4 bridges to 4, then L0 continues to 9. The snapshot is
    // never used (it does not continue a database, it replaces it).
    assert_eq!(
        names(&plan_continuation(&files, 2)),
        vec![
            (1, 1, 4),
            (0, 5, 5),
            (0, 6, 6),
            (0, 7, 7),
            (0, 8, 8),
            (0, 9, 9)
        ]
    );
    // Already current: nothing to do.
    assert!(plan_continuation(&files, 9).is_empty());
    // A gap that no level bridges: the chain stops where it can.
    let gap: Vec<_> = [1, 2, 5, 6].into_iter().map(l0).collect();
    assert_eq!(names(&plan_continuation(&gap, 1)), vec![(0, 2, 2)]);
    assert!(plan_continuation(&gap, 3).is_empty());
}

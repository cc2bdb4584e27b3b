//! Which files retention deletes (spec §1.5). Pure: works on listings; the jobs delete.
//!
//! Every decision is checked by [`keeps_latest_restorable`] before anything is deleted, so a
//! surprise in the listing (a gap, a missing level) never turns into data loss.

use std::time::{Duration, SystemTime};

use crate::replica::{LtxFileInfo, SNAPSHOT_LEVEL};
use crate::restore::{plan, PlanError, Target};
use crate::TxId;

fn older_than(f: &LtxFileInfo, retention: Duration, now: SystemTime) -> bool {
    now.duration_since(f.created_at)
        .is_ok_and(|age| age >= retention)
}

/// L0 files to delete: in TXID order, each already merged into L1 (`max <= l1_max`) and older
/// than `retention`; the scan stops at the first file that is not, so the remaining L0 files
/// stay contiguous. When every file qualifies, the newest is kept anyway. A zero `retention`
/// disables L0 retention.
pub fn l0_deletions(
    l0: &[LtxFileInfo],
    l1_max: TxId,
    retention: Duration,
    now: SystemTime,
) -> Vec<LtxFileInfo> {
    if retention.is_zero() {
        return Vec::new();
    }
    let mut sorted: Vec<&LtxFileInfo> = l0.iter().collect();
    sorted.sort_by_key(|f| (f.min_txid, f.max_txid));
    let mut out: Vec<LtxFileInfo> = Vec::new();
    for f in &sorted {
        if f.max_txid > l1_max || !older_than(f, retention, now) {
            return out;
        }
        out.push((*f).clone());
    }
    out.pop(); // the whole level qualified: keep the newest L0 file
    out
}

/// When every L0 file in `l0` that [`l0_deletions`] may ever delete without L1 changing (the
/// files merged into L1, except the newest L0 file) is old enough: the moment the youngest of
/// them ages past `retention`. `None` when there is no such file (or retention is off).
pub fn l0_settles_at(l0: &[LtxFileInfo], l1_max: TxId, retention: Duration) -> Option<SystemTime> {
    if retention.is_zero() {
        return None;
    }
    let newest = l0.iter().map(|f| (f.min_txid, f.max_txid)).max()?;
    l0.iter()
        .filter(|f| (f.min_txid, f.max_txid) != newest && f.max_txid <= l1_max)
        .map(|f| f.created_at + retention)
        .max()
}

/// Snapshots older than `retention` except the newest, then every level 1..=8 file whose max
/// TXID is below the newest deleted snapshot's max TXID (the floor), each level keeping its last
/// file. No snapshot deleted: no level file deleted.
pub fn snapshot_and_level_deletions(
    all: &[LtxFileInfo],
    retention: Duration,
    now: SystemTime,
) -> Vec<LtxFileInfo> {
    let mut snaps: Vec<&LtxFileInfo> = all.iter().filter(|f| f.level == SNAPSHOT_LEVEL).collect();
    snaps.sort_by_key(|f| (f.max_txid, f.created_at));
    let Some((_newest, older)) = snaps.split_last() else {
        return Vec::new();
    };
    let doomed: Vec<LtxFileInfo> = older
        .iter()
        .filter(|f| older_than(f, retention, now))
        .map(|f| (*f).clone())
        .collect();
    let Some(floor) = doomed.iter().map(|f| f.max_txid).max() else {
        return doomed;
    };
    let mut out = doomed;
    for level in 1..SNAPSHOT_LEVEL {
        let mut files: Vec<&LtxFileInfo> = all.iter().filter(|f| f.level == level).collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        let Some((_last, rest)) = files.split_last() else {
            continue;
        };
        out.extend(
            rest.iter()
                .filter(|f| f.max_txid < floor)
                .map(|f| (*f).clone()),
        );
    }
    out
}

/// Why a retention deletion is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the replica is not restorable now ({0}); not deleting anything")]
    NotRestorableNow(PlanError),
    #[error("the deletion would leave no restorable replica ({0})")]
    NotRestorableAfter(PlanError),
    #[error("the latest restore would end at {after:?} instead of {before:?}")]
    EndMoves {
        before: Option<TxId>,
        after: Option<TxId>,
    },
}

/// `Ok` when deleting `doomed` from `all` leaves a replica whose latest restore still works and
/// ends at the same TXID (and some snapshot-or-chain start remains).
pub fn keeps_latest_restorable(all: &[LtxFileInfo], doomed: &[LtxFileInfo]) -> Result<(), Refusal> {
    let before = plan(all, &Target::Latest).map_err(Refusal::NotRestorableNow)?;
    let kept: Vec<LtxFileInfo> = all
        .iter()
        .filter(|f| {
            !doomed
                .iter()
                .any(|d| (d.level, d.min_txid, d.max_txid) == (f.level, f.min_txid, f.max_txid))
        })
        .cloned()
        .collect();
    let after = plan(&kept, &Target::Latest).map_err(Refusal::NotRestorableAfter)?;
    let (b, a) = (
        before.last().map(|f| f.max_txid),
        after.last().map(|f| f.max_txid),
    );
    if a != b {
        return Err(Refusal::EndMoves {
            before: b,
            after: a,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn f(level: u8, min: TxId, max: TxId, secs: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: 1,
            created_at: at(secs),
        }
    }

    fn names(v: &[LtxFileInfo]) -> Vec<(u8, TxId, TxId)> {
        v.iter()
            .map(|f| (f.level, f.min_txid, f.max_txid))
            .collect()
    }

    #[test]
    fn l0_settles_when_the_youngest_merged_file_but_the_newest_ages() {
        let l0: Vec<_> = (1..=6).map(|n| f(0, n, n, n * 10)).collect();
        let r = Duration::from_secs(25);
        // Merged up to 4: files 1..=4 are deletable once file 4 (made at 40) is 25 s old.
        assert_eq!(l0_settles_at(&l0, 4, r), Some(at(65)));
        // Everything merged: the newest (6) is kept anyway, so file 5 decides.
        assert_eq!(l0_settles_at(&l0, 6, r), Some(at(75)));
        assert_eq!(l0_settles_at(&l0, 0, r), None);
        assert_eq!(
            l0_settles_at(&l0[5..], 6, r),
            None,
            "only the newest is left"
        );
        assert_eq!(l0_settles_at(&l0, 6, Duration::ZERO), None);
        // After a pass at 75, nothing is left to wait for.
        let left: Vec<_> = l0
            .iter()
            .filter(|x| !l0_deletions(&l0, 6, r, at(75)).contains(x))
            .cloned()
            .collect();
        assert_eq!(l0_settles_at(&left, 6, r), None);
    }

    #[test]
    fn l0_retention_needs_l1_and_age_and_stops_at_the_first_young_file() {
        let l0: Vec<_> = (1..=6).map(|n| f(0, n, n, n * 10)).collect();
        let r = Duration::from_secs(25);
        // Now = 70: files made at <= 45 are old enough (1..=4); L1 covers up to 5.
        assert_eq!(
            names(&l0_deletions(&l0, 5, r, at(70))),
            vec![(0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 4)]
        );
        // L1 covers only up to 2.
        assert_eq!(
            names(&l0_deletions(&l0, 2, r, at(70))),
            vec![(0, 1, 1), (0, 2, 2)]
        );
        // Nothing merged yet.
        assert!(l0_deletions(&l0, 0, r, at(70)).is_empty());
        // Everything old and merged: the newest L0 file stays.
        assert_eq!(l0_deletions(&l0, 6, r, at(1000)).len(), 5);
        // A young file in the middle stops the scan, even if later ones are old.
        let mut odd = l0.clone();
        odd[1].created_at = at(1000);
        assert_eq!(names(&l0_deletions(&odd, 6, r, at(100))), vec![(0, 1, 1)]);
        // Zero retention disables it.
        assert!(l0_deletions(&l0, 6, Duration::ZERO, at(1000)).is_empty());
    }

    #[test]
    fn snapshot_retention_keeps_the_newest_and_sets_the_level_floor() {
        let all = vec![
            f(9, 1, 0x10, 100),
            f(9, 1, 0x20, 200),
            f(9, 1, 0x30, 300),
            f(1, 0x01, 0x0f, 90),
            f(1, 0x10, 0x1f, 190),
            f(1, 0x20, 0x2f, 290),
            f(1, 0x30, 0x31, 310),
            f(2, 0x01, 0x1f, 190),
            f(2, 0x20, 0x31, 310),
            f(0, 0x31, 0x31, 310),
        ];
        let r = Duration::from_secs(150);
        // now = 360: snapshots made before 210 are expired: 0x10 and 0x20 (floor 0x20).
        let d = snapshot_and_level_deletions(&all, r, at(360));
        assert_eq!(
            names(&d),
            vec![
                (9, 1, 0x10),
                (9, 1, 0x20),
                (1, 1, 0x0f),
                (1, 0x10, 0x1f),
                (2, 1, 0x1f)
            ]
        );
        keeps_latest_restorable(&all, &d).unwrap();
        // Nothing expired: nothing deleted, not even below an old floor.
        assert!(snapshot_and_level_deletions(&all, r, at(240)).is_empty());
        // The newest snapshot is kept however old.
        let d = snapshot_and_level_deletions(&all, r, at(100_000));
        assert!(!d.iter().any(|x| x.level == 9 && x.max_txid == 0x30));
        // Each level keeps its last file even below the floor.
        let d = snapshot_and_level_deletions(&all[..5], r, at(100_000));
        assert!(
            !d.iter().any(|x| x.level == 1 && x.max_txid == 0x2f),
            "{:?}",
            names(&d)
        );
    }

    #[test]
    fn deletions_that_break_the_latest_restore_are_refused() {
        let all = vec![f(0, 1, 1, 1), f(0, 2, 2, 2), f(1, 2, 2, 3)];
        keeps_latest_restorable(&all, &[f(0, 2, 2, 2)]).unwrap();
        assert!(keeps_latest_restorable(&all, &[f(0, 1, 1, 1)]).is_err());
        let gap = vec![f(0, 1, 1, 1), f(0, 3, 3, 2)];
        assert!(keeps_latest_restorable(&gap, &[]).is_err());
        let chain = vec![f(0, 1, 1, 1), f(0, 2, 2, 2), f(0, 3, 3, 3)];
        assert!(keeps_latest_restorable(&chain, &[f(0, 3, 3, 3)]).is_err());
    }
}

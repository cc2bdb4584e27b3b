//! Restore planning (spec §4.2): which LTX files, in which order, rebuild the database at the
//! target. Pure: works on a listing, reads no file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::SystemTime;

use thiserror::Error;

use crate::replica::{LtxFileInfo, SNAPSHOT_LEVEL};
use crate::TxId;

/// The state to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Everything the replica has; a gap in the TXID chain is an error.
    Latest,
    /// Up to and including this TXID.
    TxId(TxId),
    /// Only files whose time is strictly before this instant; a gap ends the restore silently.
    Timestamp(SystemTime),
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no matching backup files available")]
    NoFiles,
    #[error(
        "no matching backup files available: TXID {requested:016x} is outside the replica's \
         retained history: {range}"
    )]
    TxIdOutOfRange {
        requested: TxId,
        range: RestorableRange,
    },
    #[error(
        "cannot calc restore plan: non-contiguous ltx files: have up to {have:016x} but next file \
         starts at {next:016x} (the replica is missing files; restore an earlier state with \
         -txid or -timestamp)"
    )]
    NonContiguous { have: TxId, next: TxId },
    #[error(
        "timestamp does not exist: {requested} is outside the replica's retained history: \
         {range}"
    )]
    TimestampOutOfRange {
        requested: String,
        range: RestorableRange,
    },
    #[error(
        "cannot restore from level {level} file {min:016x}-{max:016x}: it does not start at TXID \
         0000000000000001, so it is not a snapshot of the whole database"
    )]
    NotSnapshot { level: u8, min: TxId, max: TxId },
}

/// The oldest and newest states a restore can produce from what the replica holds now
/// (after retention): the targets `-txid` and `-timestamp` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorableRange {
    /// The smallest max TXID of a file that starts at TXID 1 (a whole database).
    pub oldest_txid: TxId,
    /// The time of the oldest file that starts at TXID 1: a `-timestamp` must be later.
    pub oldest_time: SystemTime,
    /// Where the longest contiguous chain from TXID 1 ends.
    pub newest_txid: TxId,
    /// The time of the newest file: a `-timestamp` after it names no retained state.
    pub newest_time: SystemTime,
}

impl std::fmt::Display for RestorableRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the oldest restorable point is TXID {:016x} ({}), the newest is TXID {:016x} ({}); \
             choose a -txid or -timestamp between them",
            self.oldest_txid,
            format_time(self.oldest_time),
            self.newest_txid,
            format_time(self.newest_time)
        )
    }
}

/// The restorable range of a listing (levels above 9 ignored); `None` when no file starts at
/// TXID 1, so that nothing is restorable.
pub fn restorable_range(files: &[LtxFileInfo]) -> Option<RestorableRange> {
    let files: Vec<&LtxFileInfo> = files.iter().filter(|f| f.level <= SNAPSHOT_LEVEL).collect();
    let starts = files.iter().filter(|f| f.min_txid == 1);
    let oldest_txid = starts.clone().map(|f| f.max_txid).min()?;
    let oldest_time = starts.map(|f| f.created_at).min()?;
    let newest_txid = chain(&files, &Target::Latest)
        .last()
        .map(|f| f.max_txid)
        .unwrap_or(oldest_txid);
    let newest_time = files.iter().map(|f| f.created_at).max()?;
    Some(RestorableRange {
        oldest_txid,
        oldest_time,
        newest_txid,
        newest_time,
    })
}

/// Formats a time as RFC 3339 UTC with milliseconds, for messages and dry runs.
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_else(|_| format!("{t:?}"))
}

fn eligible(f: &LtxFileInfo, target: &Target) -> bool {
    match target {
        Target::Latest => true,
        Target::TxId(t) => f.max_txid <= *t,
        Target::Timestamp(ts) => f.created_at < *ts,
    }
}

/// Orders the candidates: largest max, then smaller min, then higher level, then earlier time.
type Rank = (TxId, Reverse<TxId>, u8, Reverse<SystemTime>, Reverse<usize>);

fn rank(f: &LtxFileInfo, idx: usize) -> Rank {
    (
        f.max_txid,
        Reverse(f.min_txid),
        f.level,
        Reverse(f.created_at),
        Reverse(idx),
    )
}

/// The greedy walk of spec §4.2: the newest eligible snapshot, then at each step the eligible
/// file that starts at or before the next TXID and reaches furthest. Reaching further never
/// closes a door (any file usable from an earlier state is usable from a later one), so the walk
/// ends at the newest state the eligible files can produce.
fn chain(files: &[&LtxFileInfo], target: &Target) -> Vec<LtxFileInfo> {
    let mut out: Vec<LtxFileInfo> = Vec::new();
    let snapshot = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && eligible(f, target))
        .max_by_key(|f| (f.max_txid, f.min_txid, Reverse(f.created_at)));
    let mut current: TxId = 0;
    if let Some(s) = snapshot {
        current = s.max_txid;
        out.push((*s).clone());
    }

    let rest = extend_chain(files, current, target);
    out.extend(rest);
    out
}

/// Step 3 of the plan: the chain of files from levels 0..=8 that continues a database at TXID
/// `current` (each next file starts at or before `current + 1` and ends after it; the largest
/// max wins), up to the target. Empty when nothing continues `current`.
fn extend_chain(files: &[&LtxFileInfo], mut current: TxId, target: &Target) -> Vec<LtxFileInfo> {
    let mut out = Vec::new();
    let mut cands: Vec<&LtxFileInfo> = files
        .iter()
        .copied()
        .filter(|f| f.level < SNAPSHOT_LEVEL && eligible(f, target))
        .collect();
    cands.sort_by_key(|f| f.min_txid);
    let mut next = 0;
    let mut heap: BinaryHeap<Rank> = BinaryHeap::new();
    loop {
        if let Target::TxId(t) = target {
            if current >= *t {
                break;
            }
        }
        while next < cands.len() && cands[next].min_txid <= current.saturating_add(1) {
            heap.push(rank(cands[next], next));
            next += 1;
        }
        // Files ending at or before `current` can never qualify again: `current` only grows.
        while heap.peek().is_some_and(|r| r.0 <= current) {
            heap.pop();
        }
        let Some(best) = heap.pop() else { break };
        let f = cands[best.4 .0];
        current = f.max_txid;
        out.push(f.clone());
    }
    out
}

/// The files that bring a database already at TXID `current` to the newest state the listing
/// reaches, without a snapshot (a read replica resuming; spec §4.4 follow mode). Files of any
/// level 0..=8 bridge gaps; the result may stop short of the newest TXID when the chain has a
/// gap (the caller compares its end with the listing's max).
pub fn plan_continuation(files: &[LtxFileInfo], current: TxId) -> Vec<LtxFileInfo> {
    let files: Vec<&LtxFileInfo> = files.iter().collect();
    extend_chain(&files, current, &Target::Latest)
}

/// Plans a restore from every file of a replica (any order, any levels; levels above 9 are
/// ignored). The result starts with a file whose min TXID is 1 and is contiguous.
///
/// `-txid` and `-timestamp` give the newest state at or before the target; a target outside the
/// [`restorable_range`] is an error that names the range.
pub fn plan(files: &[LtxFileInfo], target: &Target) -> Result<Vec<LtxFileInfo>, PlanError> {
    let files: Vec<&LtxFileInfo> = files.iter().filter(|f| f.level <= SNAPSHOT_LEVEL).collect();
    if files.is_empty() {
        return Err(PlanError::NoFiles);
    }
    let owned: Vec<LtxFileInfo> = files.iter().map(|f| (*f).clone()).collect();
    let range = restorable_range(&owned);
    match (target, range) {
        (Target::Timestamp(ts), Some(range))
            if *ts <= range.oldest_time || *ts > range.newest_time =>
        {
            return Err(PlanError::TimestampOutOfRange {
                requested: format_time(*ts),
                range,
            });
        }
        (Target::TxId(t), Some(range)) if *t < range.oldest_txid || *t > range.newest_txid => {
            return Err(PlanError::TxIdOutOfRange {
                requested: *t,
                range,
            });
        }
        _ => {}
    }

    let out = chain(&files, target);
    let Some(first) = out.first() else {
        return Err(PlanError::NoFiles);
    };
    let current = out.last().map(|f| f.max_txid).unwrap_or(0);
    if *target == Target::Latest {
        let gap = files
            .iter()
            .filter(|f| f.min_txid > current.saturating_add(1))
            .map(|f| f.min_txid)
            .min();
        if let Some(next) = gap {
            return Err(PlanError::NonContiguous {
                have: current,
                next,
            });
        }
    }
    if first.min_txid != 1 {
        return Err(PlanError::NotSnapshot {
            level: first.level,
            min: first.min_txid,
            max: first.max_txid,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

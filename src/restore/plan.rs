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

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no matching backup files available")]
    NoFiles,
    #[error(
        "no matching backup files available: the files reach TXID {have:016x}, \
         not the requested {want:016x}"
    )]
    TxIdNotReached { have: TxId, want: TxId },
    #[error(
        "cannot calc restore plan: non-contiguous ltx files: have up to {have:016x} but next file \
         starts at {next:016x} (the replica is missing files; restore an earlier state with \
         -txid or -timestamp)"
    )]
    NonContiguous { have: TxId, next: TxId },
    #[error(
        "timestamp does not exist: {requested} is outside the replica's time range \
         {oldest} to {newest}"
    )]
    TimestampOutOfRange {
        requested: String,
        oldest: String,
        newest: String,
    },
    #[error(
        "cannot restore from level {level} file {min:016x}-{max:016x}: it does not start at TXID \
         0000000000000001, so it is not a snapshot of the whole database"
    )]
    NotSnapshot { level: u8, min: TxId, max: TxId },
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

/// Plans a restore from every file of a replica (any order, any levels; levels above 9 are
/// ignored). The result starts with a file whose min TXID is 1 and is contiguous.
pub fn plan(files: &[LtxFileInfo], target: &Target) -> Result<Vec<LtxFileInfo>, PlanError> {
    let files: Vec<&LtxFileInfo> = files.iter().filter(|f| f.level <= SNAPSHOT_LEVEL).collect();
    if files.is_empty() {
        return Err(PlanError::NoFiles);
    }
    if let Target::Timestamp(ts) = target {
        let oldest = files.iter().map(|f| f.created_at).min().unwrap_or(*ts);
        let newest = files.iter().map(|f| f.created_at).max().unwrap_or(*ts);
        if *ts < oldest || *ts > newest {
            return Err(PlanError::TimestampOutOfRange {
                requested: format_time(*ts),
                oldest: format_time(oldest),
                newest: format_time(newest),
            });
        }
    }

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

    let chain = extend_chain(&files, current, target);
    if let Some(last) = chain.last() {
        current = last.max_txid;
    }
    out.extend(chain);

    let Some(first) = out.first() else {
        return Err(PlanError::NoFiles);
    };
    match target {
        Target::Latest => {
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
        Target::TxId(t) if current < *t => {
            return Err(PlanError::TxIdNotReached {
                have: current,
                want: *t,
            });
        }
        _ => {}
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

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! The compactor's jobs on one replica, written against [`ReplicaClient`] only (so they work for
//! every backend): merge level N-1 into level N, write an L9 snapshot built from the replica's
//! own files, and apply retention. Each job reads the replica's listing, so it is idempotent and
//! safe to rerun after a crash.

use std::fs;
use std::path::{Path, PathBuf};

use super::merge::{contiguous_prefix, merge};
use super::retention;
use super::CompactError;
use crate::l0_cache::L0Cache;
use crate::replica::{LtxFileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::restore::{plan, Target};
use crate::TxId;

/// At most this many files are merged into one output: each open input holds a page buffer and
/// a read buffer, so this bounds the memory of one merge (a backlog is merged in several files).
pub const MAX_MERGE_INPUTS: usize = 256;

/// Removes the temp output when dropped.
struct TempOut(PathBuf);

impl Drop for TempOut {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove compaction temp file");
            }
        }
    }
}

/// Merges `inputs` and stores the result at `level` as `<first min>-<last max>`.
fn merge_and_put(
    client: &dyn ReplicaClient,
    level: u8,
    inputs: &[LtxFileInfo],
    work_dir: &Path,
    cache: Option<&L0Cache>,
) -> Result<LtxFileInfo, CompactError> {
    fs::create_dir_all(work_dir).map_err(CompactError::io(work_dir))?;
    let min = inputs.first().map(|f| f.min_txid).unwrap_or(0);
    let max = inputs.last().map(|f| f.max_txid).unwrap_or(0);
    let tmp = TempOut(work_dir.join(format!(
        "{level}-{}.tmp",
        crate::ltx::format_file_name(min, max)
    )));
    let merged = merge(client, inputs, &tmp.0, work_dir, cache)?;
    client.put(level, min, max, &tmp.0, merged.header.timestamp_ms)?;
    Ok(LtxFileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size: merged.bytes,
        created_at: crate::replica::file::system_time_from_ms(merged.header.timestamp_ms),
    })
}

/// Compacts level `level - 1` into `level` (1..=8): every source file whose min TXID is above
/// the highest max TXID already at `level` (spec §2.2). Returns the files written (none when
/// there was nothing new). L0 inputs are read from `cache` where it holds them.
pub fn compact_level(
    client: &dyn ReplicaClient,
    level: u8,
    work_dir: &Path,
    cache: Option<&L0Cache>,
) -> Result<Vec<LtxFileInfo>, CompactError> {
    assert!(
        (1..SNAPSHOT_LEVEL).contains(&level),
        "compaction levels are 1..=8"
    );
    let have: TxId = client
        .list(level)?
        .iter()
        .map(|f| f.max_txid)
        .max()
        .unwrap_or(0);
    let mut pending: Vec<LtxFileInfo> = client
        .list(level - 1)?
        .into_iter()
        .filter(|f| f.min_txid > have)
        .collect();
    pending.sort_by_key(|f| (f.min_txid, f.max_txid));
    let chain = contiguous_prefix(&pending);
    if chain.len() < pending.len() {
        tracing::debug!(
            level,
            merged = chain.len(),
            waiting = pending.len() - chain.len(),
            "level has a TXID gap; merging up to it"
        );
    }
    let mut written = Vec::new();
    for inputs in chain.chunks(MAX_MERGE_INPUTS) {
        let f = merge_and_put(client, level, inputs, work_dir, cache)?;
        tracing::info!(replica = %client.describe(), level, min = %crate::format_txid(f.min_txid), max = %crate::format_txid(f.max_txid), inputs = inputs.len(), size = f.size, "compaction complete");
        written.push(f);
    }
    Ok(written)
}

/// Writes `9/0000000000000001-<T>.ltx`, the whole database at the replica's latest TXID `T`,
/// by merging the files a latest restore would use (the newest snapshot and the levels after
/// it). Reads no live database and takes no SQLite lock. `None` when the newest snapshot
/// already covers `T`, when a snapshot was made at or after `not_before` (the last scheduled
/// boundary, so that restarting a process does not snapshot again), or the replica is empty.
/// L0 inputs are read from `cache` where it holds them.
pub fn snapshot(
    client: &dyn ReplicaClient,
    work_dir: &Path,
    not_before: Option<std::time::SystemTime>,
    cache: Option<&L0Cache>,
) -> Result<Option<LtxFileInfo>, CompactError> {
    let all = client.list_all()?;
    if all.is_empty() {
        return Ok(None);
    }
    let planned = plan(&all, &Target::Latest)?;
    let latest = planned.last().map(|f| f.max_txid).unwrap_or(0);
    let mut snaps = all
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && f.min_txid == 1);
    let fresh = |f: &LtxFileInfo| not_before.is_some_and(|t| f.created_at >= t);
    if snaps.any(|f| f.max_txid >= latest || fresh(f)) {
        return Ok(None);
    }
    let f = merge_and_put(client, SNAPSHOT_LEVEL, &planned, work_dir, cache)?;
    tracing::info!(replica = %client.describe(), txid = %crate::format_txid(f.max_txid), inputs = planned.len(), size = f.size, "snapshot complete");
    Ok(Some(f))
}

/// L0 retention (spec §1.5): deletes L0 files already merged into L1 and older than
/// `retention`. Returns the files deleted and when the L0 files it kept will all be old enough
/// to delete (`None`: none of them will be before L1 changes; see `retention::l0_settles_at`).
///
/// Lists levels 0 and 1 only. When there is something to delete, the deletion is checked
/// against levels 0, 1 and 9 (one more LIST): the newest TXID is always in L0, and more files
/// only let a restore reach further, so a latest restore that these levels keep intact is kept
/// by the whole replica. Only when that check fails is every level listed and checked.
pub fn l0_retention_pass(
    client: &dyn ReplicaClient,
    retention: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<(Vec<LtxFileInfo>, Option<std::time::SystemTime>), CompactError> {
    let l0 = client.list(0)?;
    let l1 = client.list(1)?;
    let l1_max = l1.iter().map(|f| f.max_txid).max().unwrap_or(0);
    let doomed = retention::l0_deletions(&l0, l1_max, retention, now);
    let deleted = if doomed.is_empty() {
        doomed
    } else {
        let mut some: Vec<LtxFileInfo> = l0.iter().chain(&l1).cloned().collect();
        some.extend(client.list(SNAPSHOT_LEVEL)?);
        if retention::keeps_latest_restorable(&some, &doomed).is_ok() {
            delete_unchecked(client, doomed, "l0 retention enforced")?
        } else {
            delete_checked(client, &client.list_all()?, doomed, "l0 retention enforced")?
        }
    };
    let kept: Vec<LtxFileInfo> = l0.into_iter().filter(|f| !deleted.contains(f)).collect();
    // A moment already past means retention refused to delete (logged): wait for new input.
    let settles = retention::l0_settles_at(&kept, l1_max, retention).filter(|t| *t > now);
    Ok((deleted, settles))
}

/// Snapshot and level retention (spec §1.5): snapshots older than `retention` (the newest is
/// always kept), then level files below the newest deleted snapshot's TXID (each level keeps its
/// last file). Returns the files deleted.
pub fn enforce_snapshot_retention(
    client: &dyn ReplicaClient,
    retention: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<Vec<LtxFileInfo>, CompactError> {
    let all = client.list_all()?;
    let doomed = retention::snapshot_and_level_deletions(&all, retention, now);
    delete_checked(client, &all, doomed, "retention enforced")
}

/// Deletes `doomed` only if a latest restore still works afterwards and ends at the same TXID.
fn delete_checked(
    client: &dyn ReplicaClient,
    all: &[LtxFileInfo],
    doomed: Vec<LtxFileInfo>,
    what: &str,
) -> Result<Vec<LtxFileInfo>, CompactError> {
    if doomed.is_empty() {
        return Ok(doomed);
    }
    if let Err(reason) = retention::keeps_latest_restorable(all, &doomed) {
        tracing::warn!(replica = %client.describe(), files = doomed.len(), reason = %reason, "retention skipped: deleting these files would break the latest restore");
        return Ok(Vec::new());
    }
    delete_unchecked(client, doomed, what)
}

/// Deletes `doomed` (already checked by the caller) and logs it.
fn delete_unchecked(
    client: &dyn ReplicaClient,
    doomed: Vec<LtxFileInfo>,
    what: &str,
) -> Result<Vec<LtxFileInfo>, CompactError> {
    client.delete(&doomed)?;
    tracing::info!(replica = %client.describe(), deleted = doomed.len(), "{what}");
    for f in &doomed {
        tracing::debug!(level = f.level, min = %crate::format_txid(f.min_txid), max = %crate::format_txid(f.max_txid), "deleted ltx file");
    }
    Ok(doomed)
}

//! The replication status the stager ([`crate::stager`]) publishes for the other processes of
//! the machine that have the database open: `<meta>/stager-status.json` (design:
//! `docs/staging.md`, "Several processes").
//!
//! The stager rewrites it after each sync (written as `.tmp`, renamed, not fsynced: it is
//! derived from the replica's acknowledgements and rewritten at the next sync, and a reader
//! never sees half a file). A non-stager reads it only when asked for its status or when it
//! waits for the replica, never at a commit.
//!
//! Whose commits it covers: `covered_ns` is a wall-clock time (ns since the Unix epoch) such
//! that every transaction whose commit point (any process's) came before it is in the replica.
//! A process notes the time of each of its own commit points while it still holds SQLite's WAL
//! write lock; the stager notes, for each capture, a time taken before it read SQLite's
//! committed mark (or while it held the write lock itself). A commit noted before that time is
//! at or below that mark, so the replica holds it once the capture is acknowledged.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::staging::{MetaDir, StagingError};
use crate::TxId;

/// The file's name inside the meta directory.
pub const FILE: &str = "stager-status.json";

/// What the stager publishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedStatus {
    /// The stager's process id.
    pub pid: u32,
    /// Every transaction committed before this time (ns since the epoch) is in the replica.
    pub covered_ns: i64,
    /// Highest TXID sealed, and acknowledged by the replica.
    pub txid: TxId,
    pub replicated_txid: TxId,
    /// Transactions the stager captured that the replica has not acknowledged, and their bytes.
    pub pending_transactions: u64,
    pub pending_bytes: u64,
    /// Commit time (ms since the epoch) of the oldest of them.
    pub oldest_pending_ms: Option<i64>,
    /// Time (ms since the epoch) of the stager's last successful sync.
    pub last_sync_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Largest status file read: a few hundred bytes, plus an error message.
const MAX_FILE: u64 = 16 * 1024;

fn path(meta: &MetaDir) -> PathBuf {
    meta.root.join(FILE)
}

/// Wall-clock nanoseconds since the Unix epoch (the time base of `covered_ns`).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl SharedStatus {
    /// Replaces the published status (the stager only).
    pub fn publish(&self, meta: &MetaDir) -> Result<(), StagingError> {
        let path = path(meta);
        let tmp = meta.root.join(format!("{FILE}.tmp"));
        let io_err = |source| StagingError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|e| io_err(e.into()))?;
        std::fs::write(&tmp, bytes).map_err(io_err)?;
        std::fs::rename(&tmp, &path).map_err(io_err)
    }

    /// The published status; `Ok(None)` while no stager published one.
    pub fn read(meta: &MetaDir) -> Result<Option<SharedStatus>, StagingError> {
        let path = path(meta);
        let Some(data) = crate::small_file::read_bounded(&path, MAX_FILE).map_err(|source| {
            StagingError::Io {
                path: path.clone(),
                source,
            }
        })?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StagingError::BadState {
                path,
                reason: e.to_string(),
            })
    }

    /// True when the replica holds a transaction whose commit point was noted at `at_ns`.
    pub fn covers(&self, at_ns: i64) -> bool {
        at_ns < self.covered_ns
    }
}

/// A non-stager's own commits the published status did not cover yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OwnCommits {
    /// Commit point of the newest one (ns since the epoch).
    newest_ns: i64,
    /// Commit time (ms since the epoch) of the oldest one not known to be covered.
    oldest_ms: Option<i64>,
    /// How many were noted since the last time all were covered.
    count: u64,
}

impl OwnCommits {
    /// Notes a commit of this process at `at_ns` / `at_ms`.
    pub fn committed(&mut self, at_ns: i64, at_ms: i64) {
        self.newest_ns = self.newest_ns.max(at_ns);
        self.oldest_ms.get_or_insert(at_ms);
        self.count += 1;
    }

    /// Forgets what `published` covers. When only some are covered, the rest are still counted
    /// from the oldest (an overestimate of the lag until the newest one is covered).
    pub fn confirm(&mut self, published: &SharedStatus) {
        if published.covers(self.newest_ns) {
            self.oldest_ms = None;
            self.count = 0;
        }
    }

    /// The commit point of the newest own commit (0 before the first).
    pub fn newest_ns(&self) -> i64 {
        self.newest_ns
    }

    /// Commit time of the oldest own commit not known to be in the replica, and how many.
    pub fn unconfirmed(&self) -> Option<(i64, u64)> {
        self.oldest_ms.map(|t| (t, self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_status_round_trips_and_a_bad_file_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir {
            root: dir.path().to_path_buf(),
        };
        assert_eq!(SharedStatus::read(&meta).unwrap(), None);
        let s = SharedStatus {
            pid: 7,
            covered_ns: 100,
            replicated_txid: 3,
            oldest_pending_ms: Some(5),
            last_error: Some("replica down".into()),
            ..Default::default()
        };
        s.publish(&meta).unwrap();
        assert_eq!(SharedStatus::read(&meta).unwrap(), Some(s));
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let err = SharedStatus::read(&meta).unwrap_err().to_string();
        assert!(err.contains(FILE), "{err}");
    }

    #[test]
    fn own_commits_are_confirmed_only_when_the_newest_is_covered() {
        let mut own = OwnCommits::default();
        assert_eq!(own.unconfirmed(), None);
        own.committed(10, 1);
        own.committed(20, 2);
        assert_eq!(own.unconfirmed(), Some((1, 2)));
        let at = |covered_ns| SharedStatus {
            covered_ns,
            ..Default::default()
        };
        own.confirm(&at(20));
        assert_eq!(own.unconfirmed(), Some((1, 2)), "a tie is not covered");
        own.confirm(&at(21));
        assert_eq!(own.unconfirmed(), None);
        own.committed(30, 3);
        assert_eq!(own.unconfirmed(), Some((3, 1)));
        assert_eq!(own.newest_ns(), 30);
    }
}

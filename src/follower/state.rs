//! The follower's local records in the replica's meta directory
//! (`.<replica file name>-litestream/` beside it, the same convention as a primary's):
//!
//! ```text
//! follower.json         which primary state the local file holds (TXID ↔ change counter)
//! follower-status.json  last poll, newest TXID seen, last error (for `read-replica status`)
//! follower.lock         serialises restores of a missing file between processes (flock)
//! ```
//! `follower.json` is written before an apply commits (with `pending`) and after it (without),
//! fsynced and renamed atomically; the database's change counter says which one is true.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FollowError;
use crate::TxId;

/// What the local database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerState {
    /// The replica followed (its URL form); a different replica means starting over.
    pub replica: String,
    /// The primary's TXID the database holds while its change counter equals `counter`.
    pub txid: TxId,
    pub counter: u32,
    /// An apply that may have committed: it did if the change counter equals its counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub txid: TxId,
    pub counter: u32,
}

impl FollowerState {
    /// The TXID a database whose change counter is `counter` holds; `None` if neither the
    /// committed nor the pending record matches (the file was changed by something else).
    pub fn txid_for_counter(&self, counter: u32) -> Option<TxId> {
        if counter == self.counter {
            return Some(self.txid);
        }
        self.pending
            .filter(|p| p.counter == counter)
            .map(|p| p.txid)
    }
}

/// The follower's status as last written by a poller (any process), for the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub txid: TxId,
    /// Newest TXID seen in the replica.
    pub primary_txid: TxId,
    /// Milliseconds since the epoch.
    pub last_poll_ms: Option<i64>,
    /// Last time the local file was confirmed equal to the newest state of the replica.
    pub last_current_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Paths of one follower's records.
#[derive(Debug, Clone)]
pub struct MetaFiles {
    pub dir: PathBuf,
}

impl MetaFiles {
    /// The meta directory of the local replica file `db` (`.<name>-litestream` beside it).
    pub fn for_db(db: &Path) -> MetaFiles {
        MetaFiles {
            dir: crate::staging::MetaDir::for_db(db, None).root,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("follower.json")
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.join("follower-status.json")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("follower.lock")
    }

    /// A primary's replication state: present once the file was promoted.
    pub fn primary_state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn create(&self) -> Result<(), FollowError> {
        fs::create_dir_all(&self.dir).map_err(FollowError::io(&self.dir, "create directory"))
    }

    pub fn load(&self) -> Result<Option<FollowerState>, FollowError> {
        read_json(&self.state_path())
    }

    /// Writes `follower.json` durably (temp file, fsync, rename, fsync the directory).
    pub fn save(&self, state: &FollowerState) -> Result<(), FollowError> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&self.state_path(), &bytes, true)
    }

    pub fn load_status(&self) -> Result<Option<StatusRecord>, FollowError> {
        read_json(&self.status_path())
    }

    /// Writes the status record (atomically, not fsynced: it is informational).
    pub fn save_status(&self, status: &StatusRecord) -> Result<(), FollowError> {
        let bytes = serde_json::to_vec_pretty(status).expect("status serializes");
        write_atomic(&self.status_path(), &bytes, false)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, FollowError> {
    match crate::small_file::read_bounded(path, crate::small_file::MAX_SMALL_FILE) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| FollowError::BadState {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
        }
        Err(e) => Err(FollowError::Io {
            path: path.to_path_buf(),
            op: "read",
            source: e,
        }),
    }
}

fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), FollowError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{:08x}", fastrand::u32(..)));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FollowError::Io {
            path: path.to_path_buf(),
            op: "write",
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_decides_between_committed_and_pending() {
        let mut s = FollowerState {
            replica: "file:///r".into(),
            txid: 5,
            counter: 10,
            pending: None,
        };
        assert_eq!(s.txid_for_counter(10), Some(5));
        assert_eq!(s.txid_for_counter(11), None);
        s.pending = Some(Pending {
            txid: 9,
            counter: 11,
        });
        assert_eq!(s.txid_for_counter(11), Some(9));
        assert_eq!(s.txid_for_counter(10), Some(5));
        assert_eq!(s.txid_for_counter(12), None);
    }

    #[test]
    fn save_load_round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaFiles::for_db(&dir.path().join("r.db"));
        assert_eq!(m.dir, dir.path().join(".r.db-liblitestream"));
        m.create().unwrap();
        assert_eq!(m.load().unwrap(), None);
        let s = FollowerState {
            replica: "file:///x".into(),
            txid: 3,
            counter: 4,
            pending: Some(Pending {
                txid: 5,
                counter: 5,
            }),
        };
        m.save(&s).unwrap();
        assert_eq!(m.load().unwrap(), Some(s));
        let st = StatusRecord {
            txid: 3,
            primary_txid: 7,
            last_poll_ms: Some(1),
            last_current_ms: None,
            last_error: Some("x".into()),
        };
        m.save_status(&st).unwrap();
        assert_eq!(m.load_status().unwrap(), Some(st));
        let names: Vec<String> = fs::read_dir(&m.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
        fs::write(m.state_path(), b"{oops").unwrap();
        assert!(matches!(m.load(), Err(FollowError::BadState { .. })));
    }
}

//! Which process of a machine stages and ships one database: the holder of an advisory lock on
//! `<meta dir>/writer.lock` (design: `docs/staging.md`, "Several processes").
//!
//! Every process that opens a replicated database shares its meta directory. Only the lock
//! holder (the *stager*) captures committed WAL frames into staging segments, seals and uploads
//! L0 files and writes `state.json`; it reads every process's frames from the shared `-wal`.
//! Other processes leave the meta directory and the replica alone. The lock is released when
//! the holder's last connection to the database closed and everything staged was shipped, or
//! by the kernel when the holder exits or is killed; the next process that commits (or closes
//! the database last) takes it and continues from what the meta directory records.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use crate::staging::{MetaDir, StagingError};

/// The process whose background threads replicate (set when the uploader thread starts).
static REPLICATING_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Records that this process's threads replicate (called once, by the uploader at its start).
pub fn set_replicating_process() {
    let _ = REPLICATING_PID.set(std::process::id());
}

/// True when replication runs in this process: false in a child forked after the uploader
/// started (the parent's threads do not exist there, so it must neither stage nor ship).
pub fn replicating_here() -> bool {
    REPLICATING_PID
        .get()
        .is_none_or(|&pid| pid == std::process::id())
}

/// The lock file's name inside the meta directory.
pub const LOCK_FILE: &str = "writer.lock";

/// This process's hold on a database's stager lock. Dropping it closes the descriptor, which
/// releases the lock unless a forked child still shares it (see [`StagerLock::held_here`]).
#[derive(Debug)]
pub struct StagerLock {
    _file: File,
    pid: u32,
}

impl StagerLock {
    /// True in the process that took the lock. A child forked after that shares the locked
    /// descriptor but must not stage: it has no uploader, and its parent keeps staging.
    pub fn held_here(&self) -> bool {
        self.pid == std::process::id()
    }
}

pub fn lock_path(meta: &MetaDir) -> PathBuf {
    meta.root.join(LOCK_FILE)
}

/// Takes the stager lock without waiting. `Ok(None)` while another process holds it.
pub fn try_lock(meta: &MetaDir) -> Result<Option<StagerLock>, StagingError> {
    let path = lock_path(meta);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StagingError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(StagerLock {
            _file: file,
            pid: std::process::id(),
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(StagingError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir {
            root: dir.path().to_path_buf(),
        };
        let first = try_lock(&meta).unwrap().expect("free at first");
        assert!(first.held_here());
        // flock conflicts between open file descriptions, even within one process.
        assert!(try_lock(&meta).unwrap().is_none(), "held");
        drop(first);
        assert!(try_lock(&meta).unwrap().is_some(), "released on drop");
    }

    #[test]
    fn a_missing_meta_directory_is_a_named_error() {
        let meta = MetaDir {
            root: PathBuf::from("/nonexistent/meta"),
        };
        let err = try_lock(&meta).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/meta/writer.lock"), "{err}");
    }
}

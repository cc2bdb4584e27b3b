//! Restore on open (`restore-if-db-not-exists: true`, or the URI parameter `restore=1`): a
//! missing database is restored from its replica before SQLite opens it, and the replica
//! position is recorded in the meta directory's `state.json`, so that replication continues the
//! replica's TXID chain with small incremental files instead of starting over with a full image.
//!
//! Called by [`crate::registry::open`] from the VFS's `xOpen`, before the file exists for
//! SQLite. Concurrent openers of one path restore once: a per-path lock in this process and an
//! exclusive `flock` on `<meta dir>/restore.lock` across processes; whoever comes second finds
//! the database present.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use thiserror::Error;

use crate::config::DbConfig;
use crate::replica::ReplicaClient;
use crate::restore::{restore, RestoreError, RestoreOptions, RestoreOutcome};
use crate::staging::{MetaDir, StagingError, State, WalPos};
use crate::wal::WAL_HEADER_SIZE;
use crate::TxId;

/// What [`restore_if_missing`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrapped {
    /// The database exists: nothing was done.
    Exists,
    /// The replica has no restorable files: SQLite creates a new, empty database.
    NoReplica,
    /// Restored at this TXID; the position is recorded.
    Restored { txid: TxId },
}

#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error(
        "{db}: cannot restore the missing database from {replica}: {source} (fix the replica \
         or its configuration, or create the database without restore-on-open)"
    )]
    Restore {
        db: PathBuf,
        replica: String,
        source: Box<RestoreError>,
    },
    #[error("{db}: restored, but cannot record the replica position: {source}")]
    Staging { db: PathBuf, source: StagingError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn path_lock(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS.get_or_init(|| Mutex::new(HashMap::new())).lock();
    Arc::clone(map.entry(path.to_path_buf()).or_default())
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Restores `db` from `client` if the file does not exist (see the module docs).
pub fn restore_if_missing(
    db: &Path,
    cfg: &DbConfig,
    client: &dyn ReplicaClient,
) -> Result<Bootstrapped, BootstrapError> {
    if exists(db) {
        return Ok(Bootstrapped::Exists);
    }
    let lock = path_lock(db);
    let _in_process = lock.lock();
    let meta = MetaDir::for_db(db, cfg.meta_path.as_deref());
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BootstrapError::Io { path, source }
    };
    fs::create_dir_all(&meta.root).map_err(io_err(&meta.root))?;
    let lock_path = meta.root.join("restore.lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock_file.lock().map_err(io_err(&lock_path))?;
    if exists(db) {
        return Ok(Bootstrapped::Exists); // another opener restored it while we waited
    }
    let staging_err = |source| BootstrapError::Staging {
        db: db.to_path_buf(),
        source,
    };
    // The database is gone: what the meta directory remembers belongs to a previous life.
    reset_meta(&meta).map_err(staging_err)?;
    let opts = RestoreOptions {
        if_replica_exists: true,
        ..RestoreOptions::new(db)
    };
    let outcome = restore(client, &opts).map_err(|source| BootstrapError::Restore {
        db: db.to_path_buf(),
        replica: client.describe(),
        source: Box::new(source),
    })?;
    let (txid, page_size, commit) = match outcome {
        RestoreOutcome::Restored {
            txid,
            page_size,
            page_count,
            ..
        } => (txid, page_size, page_count),
        RestoreOutcome::NoReplica | RestoreOutcome::DbExists => {
            tracing::info!(db = %db.display(), replica = %client.describe(), "no replica to restore; a new database is created");
            return Ok(Bootstrapped::NoReplica);
        }
    };
    let state =
        restored_state(db, client.describe(), txid, page_size, commit).ok_or_else(|| {
            BootstrapError::Io {
                path: db.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "restored file vanished"),
            }
        })?;
    meta.create_dirs().map_err(staging_err)?;
    meta.save_state(&state).map_err(staging_err)?;
    tracing::info!(db = %db.display(), replica = %client.describe(), txid = %crate::format_txid(txid), "restored the missing database; replication continues the replica's chain");
    Ok(Bootstrapped::Restored { txid })
}

/// The replication position of a database just restored at `txid`: the replica holds
/// everything, and the database file is the clean end of a WAL generation (so the first
/// frames of the next WAL continue the chain).
fn restored_state(
    db: &Path,
    replica: String,
    txid: TxId,
    page_size: u32,
    commit: u32,
) -> Option<State> {
    Some(State {
        txid,
        replicated_txid: txid,
        sealed_segment: 0,
        // No WAL generation yet: salts that SQLite's next WAL will not have.
        wal: Some(WalPos {
            offset: WAL_HEADER_SIZE,
            ..WalPos::default()
        }),
        closed: Some(crate::database::fingerprint(db)?),
        page_size,
        commit,
        replica,
    })
}

/// Removes `state.json`, staged segments and local L0 files of a database that no longer
/// exists (warning when unshipped data is dropped).
fn reset_meta(meta: &MetaDir) -> Result<(), StagingError> {
    let segments = meta.list_segments().unwrap_or_default();
    let l0 = meta.list_l0().unwrap_or_default();
    if !segments.is_empty() || !l0.is_empty() {
        tracing::warn!(meta = %meta.root.display(), segments = segments.len(), l0_files = l0.len(), "the database file is missing: discarding what its previous run staged but never shipped");
    }
    for seq in segments {
        remove(&meta.segment_path(seq))?;
    }
    for (min, max) in l0 {
        remove(&meta.l0_path(min, max))?;
    }
    remove(&meta.state_path())
}

fn remove(path: &Path) -> Result<(), StagingError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StagingError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::FileReplica;

    fn cfg(db: &Path) -> DbConfig {
        crate::config::from_replica_url(db, "file:///unused").unwrap()
    }

    fn put_snapshot(client: &FileReplica, dir: &Path) {
        let header = crate::ltx::Header {
            flags: crate::ltx::FLAG_NO_CHECKSUM,
            page_size: 512,
            commit: 2,
            min_txid: 1,
            max_txid: 5,
            timestamp_ms: 1,
            ..Default::default()
        };
        let mut enc = crate::ltx::Encoder::new(Vec::new(), &header).unwrap();
        let mut first = [1u8; 512];
        crate::restore::stamp_header(&mut first, 512);
        enc.write_page(1, &first).unwrap();
        enc.write_page(2, &[2u8; 512]).unwrap();
        let (bytes, _) = enc.finish().unwrap();
        let src = dir.join("s.ltx");
        fs::write(&src, bytes).unwrap();
        client.put(9, 1, 5, &src, 1).unwrap();
    }

    #[test]
    fn restores_once_and_records_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let client = FileReplica::new(dir.path().join("replica"));
        put_snapshot(&client, dir.path());
        let c = cfg(&db);
        // Stale meta data of a previous database at this path.
        let meta = MetaDir::for_db(&db, None);
        meta.create_dirs().unwrap();
        fs::write(meta.segment_path(3), b"stale").unwrap();
        let results: Vec<Bootstrapped> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| restore_if_missing(&db, &c, &client).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let restored = results
            .iter()
            .filter(|r| matches!(r, Bootstrapped::Restored { txid: 5 }))
            .count();
        assert_eq!(restored, 1, "{results:?}");
        assert!(results
            .iter()
            .all(|r| matches!(r, Bootstrapped::Restored { .. } | Bootstrapped::Exists)));
        assert_eq!(fs::read(&db).unwrap().len(), 1024);
        let st = meta.load_state().unwrap().unwrap();
        assert_eq!(
            (st.txid, st.replicated_txid, st.commit, st.page_size),
            (5, 5, 2, 512)
        );
        assert_eq!(st.replica, client.describe());
        assert_eq!(st.closed, crate::database::fingerprint(&db));
        assert!(meta.list_segments().unwrap().is_empty());
        assert!(crate::fencing::has_position(&st, &client.describe()));
    }

    #[test]
    fn empty_replica_means_a_new_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let client = FileReplica::new(dir.path().join("replica"));
        assert_eq!(
            restore_if_missing(&db, &cfg(&db), &client).unwrap(),
            Bootstrapped::NoReplica
        );
        assert!(!db.exists());
    }

    #[test]
    fn an_existing_database_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        fs::write(&db, b"mine").unwrap();
        let client = FileReplica::new(dir.path().join("replica"));
        put_snapshot(&client, dir.path());
        assert_eq!(
            restore_if_missing(&db, &cfg(&db), &client).unwrap(),
            Bootstrapped::Exists
        );
        assert_eq!(fs::read(&db).unwrap(), b"mine");
    }

    #[test]
    fn a_broken_replica_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let client = FileReplica::new(dir.path().join("replica"));
        let src = dir.path().join("junk");
        fs::write(&src, b"not an ltx file").unwrap();
        client.put(0, 1, 1, &src, 1).unwrap();
        let err = restore_if_missing(&db, &cfg(&db), &client).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot restore the missing database"),
            "{err}"
        );
        assert!(!db.exists());
    }
}

//! The safe side of the `litestream` VFS: what role a file plays ([`classify`]) and which
//! io-method calls are replication events ([`OpenFile`]). The `unsafe` trampolines in
//! [`crate::ffi::vfs_shim`] only convert arguments and call these.

use std::path::Path;
use std::sync::Arc;

use crate::capture::WalIndexMark;
use crate::database::Database;

mod open_file;
pub use open_file::{FileEvents, OpenFile, WAL_INDEX_HEADER_BYTES};
#[cfg(test)]
pub use open_file::{FCNTL_COMMIT_PHASETWO, SHM_EXCLUSIVE, SHM_UNLOCK};

/// SQLite open flags used to classify files (sqlite3.h).
pub const OPEN_READONLY: i32 = 0x0000_0001;
pub const OPEN_READWRITE: i32 = 0x0000_0002;
pub const OPEN_CREATE: i32 = 0x0000_0004;
pub const OPEN_URI: i32 = 0x0000_0040;
pub const OPEN_MAIN_DB: i32 = 0x0000_0100;
pub const OPEN_MAIN_JOURNAL: i32 = 0x0000_0800;
pub const OPEN_WAL: i32 = 0x0008_0000;

/// Why a file SQLite opens cannot be set up for replication or as a read replica.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// A read replica (configured, or `replica=` on a read-only open) cannot be set up.
    #[error(transparent)]
    ReadReplica(#[from] crate::follower::routing::RouteError),
    /// A managed database's replication cannot be set up.
    #[error(transparent)]
    Open(#[from] crate::registry::OpenError),
    /// A child forked from a process that has the managed database open.
    #[error(
        "this process was forked from one that has {} open: fork() copied SQLite's \
         per-process lock records of the file, which are wrong here, so the open could wait \
         forever or break the parent's locking; open the database in a process started \
         with exec (Python: a multiprocessing \"spawn\" or \"forkserver\" context, or \
         subprocess), or only while the parent has it closed",
        path.display()
    )]
    ForkedChild { path: std::path::PathBuf },
}

/// The part a file plays for replication.
pub enum Role {
    /// The main database file of a managed database.
    Main(Arc<Database>),
    /// The `-wal` of a managed database.
    Wal(Arc<Database>),
    /// Anything else: passes through untouched.
    Other,
    /// A read replica (or a file beside one): opened read-only, under `rename` when given
    /// (SQLite's database-name layout: pass `&rename[4..]`), see [`crate::follower::routing`].
    ReadOnly { rename: Option<&'static [u8]> },
}

/// Decides the role of a file SQLite opens. `Err`: a managed database whose replication
/// cannot be set up (bad configuration, failed restore-on-open); the open fails with this
/// message in the log. `uri_restore`: the URI parameter `restore=1` (restore a missing
/// database from its replica first).
pub fn classify(
    path: Option<&str>,
    flags: i32,
    uri_replica: Option<&str>,
    uri_restore: bool,
) -> Result<Role, ClassifyError> {
    let Some(path) = path else {
        return Ok(Role::Other);
    };
    if flags & OPEN_MAIN_DB != 0 && crate::registry::open_in_parent_at_fork(Path::new(path)) {
        return Err(ClassifyError::ForkedChild { path: path.into() });
    }
    if !crate::stager::replicating_here() {
        // A child forked after replication started: its parent's threads (which may have held
        // any of our locks at the fork) do not exist here. Every file passes through untouched:
        // the child never takes one of our locks, so it cannot hang on one, and what it
        // commits is in the WAL, where the parent's capture reads it.
        return Ok(Role::Other);
    }
    if flags & OPEN_MAIN_DB != 0 {
        use crate::follower::routing::{route_main, MainRoute};
        match route_main(Path::new(path), flags, uri_replica)? {
            MainRoute::Replica => return Ok(Role::ReadOnly { rename: None }),
            MainRoute::Failover { name } => return Ok(Role::ReadOnly { rename: Some(name) }),
            MainRoute::Normal => {}
        }
        return Ok(
            match crate::registry::open(Path::new(path), uri_replica, uri_restore)? {
                Some(db) => Role::Main(db),
                None => Role::Other,
            },
        );
    }
    if flags & (OPEN_WAL | OPEN_MAIN_JOURNAL) != 0 {
        if let Some(name) = crate::follower::routing::redirect_sidecar(path) {
            return Ok(Role::ReadOnly { rename: Some(name) });
        }
    }
    if flags & OPEN_WAL != 0 {
        if let Some(db) = path
            .strip_suffix("-wal")
            .and_then(|p| crate::registry::get(Path::new(p)))
        {
            return Ok(Role::Wal(db));
        }
    }
    if flags & OPEN_MAIN_JOURNAL != 0 {
        if let Some(db) = path
            .strip_suffix("-journal")
            .and_then(|p| crate::registry::get(Path::new(p)))
        {
            // Writes in rollback-journal mode bypass the WAL, so history cannot be proven.
            db.on_rollback_journal();
        }
    }
    Ok(Role::Other)
}

/// `xDelete` of a file: deleting the `-wal` of a managed database means the last connection
/// is closing after a complete checkpoint (see [`Database::on_wal_deleted`]).
pub fn before_delete(path: &str) {
    if let Some(db) = path
        .strip_suffix("-wal")
        .and_then(|p| crate::registry::get(Path::new(p)))
    {
        db.on_wal_deleted();
    }
}

impl FileEvents for Arc<Database> {
    fn handle_opened(&self) {
        Database::handle_opened(self);
    }
    fn handle_closed(&self) {
        Database::handle_closed(self);
    }
    fn on_commit(&self, mark: Option<WalIndexMark>) {
        Database::on_commit(self, mark);
    }
    fn before_wal_reset(&self) {
        Database::before_wal_reset(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmanaged_files_pass_through() {
        assert!(matches!(
            classify(None, OPEN_MAIN_DB, None, false),
            Ok(Role::Other)
        ));
        assert!(matches!(
            classify(Some("/nonexistent/x.db-wal"), OPEN_WAL, None, false),
            Ok(Role::Other)
        ));
    }
}

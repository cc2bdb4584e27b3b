//! Process-wide state: one [`Database`] per managed path (the configuration is
//! [`crate::config::global`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::bootstrap::BootstrapError;
use crate::config::{self, ConfigError, DbConfig};
use crate::database::Database;
use crate::replica::ReplicaError;
use crate::staging::StagingError;

/// Why a managed database's replication cannot be set up when SQLite opens it (the open
/// fails with this message in the log).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration file (`LITESTREAM_CONFIG` or the default path) cannot be loaded.
    #[error("{0}")]
    Config(&'static ConfigError),
    /// The `replica=` URI parameter is not a valid replica URL.
    #[error(transparent)]
    ReplicaUrl(#[from] ConfigError),
    /// The replica's client cannot be built.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Restoring the missing database from its replica failed.
    #[error(transparent)]
    Restore(#[from] BootstrapError),
    /// The local replication state (meta directory, staging) cannot be opened.
    #[error("{path}: {source}")]
    State { path: PathBuf, source: StagingError },
}

static DATABASES: OnceLock<Mutex<HashMap<PathBuf, Arc<Database>>>> = OnceLock::new();

fn databases() -> &'static Mutex<HashMap<PathBuf, Arc<Database>>> {
    DATABASES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The managed database at `path`, opening its replication state on first use.
/// `uri_replica`: the `replica=URL` URI parameter, which overrides the configuration file.
/// `uri_restore`: the `restore=1` URI parameter; with it (or `restore-if-db-not-exists`), a
/// missing database is first restored from its replica ([`crate::bootstrap`]).
/// `Ok(None)`: not managed; the file passes through untouched.
pub fn open(
    path: &Path,
    uri_replica: Option<&str>,
    uri_restore: bool,
) -> Result<Option<Arc<Database>>, OpenError> {
    if let Some(db) = get(path) {
        return Ok(Some(db));
    }
    let db_config: DbConfig = match uri_replica {
        Some(url) => config::from_replica_url(path, url)?,
        None => match config::global()
            .map_err(OpenError::Config)?
            .and_then(|c| c.replicated_db(path))
        {
            Some(c) => c.into_owned(),
            None => match crate::replicate_all::db_config(path) {
                Some(c) => c,
                None => return Ok(None),
            },
        },
    };
    let client: std::sync::Arc<dyn crate::replica::ReplicaClient> =
        crate::replica::client_for(&db_config.replica)?.into();
    if uri_restore || db_config.restore_if_db_not_exists {
        // Without the registry lock: a restore can take long; it serializes per path itself.
        crate::bootstrap::restore_if_missing(path, &db_config, client.as_ref())?;
    }
    let mut dbs = databases().lock();
    if let Some(db) = dbs.get(path) {
        return Ok(Some(Arc::clone(db)));
    }
    let db = Database::open(path.to_path_buf(), db_config, client, crate::uploader::wake).map_err(
        |source| OpenError::State {
            path: path.to_path_buf(),
            source,
        },
    )?;
    tracing::info!(db = %path.display(), replica = %db.client.describe(), "replicating");
    dbs.insert(path.to_path_buf(), Arc::clone(&db));
    crate::compactor::watch(&db);
    // Ship what a killed previous run left staged now, not at the first commit: `dirty` starts
    // set when segments are left, so captures would not notify until a sync cleared it. A
    // database with nothing staged or sealed is current: opening it makes no request.
    if db.has_staged_work() {
        crate::uploader::notify(&db, false);
    }
    Ok(Some(db))
}

/// The managed database at `path`, if one was opened in this process.
pub fn get(path: &Path) -> Option<Arc<Database>> {
    databases().lock().get(path).cloned()
}

/// Every managed database opened in this process.
pub fn all() -> Vec<Arc<Database>> {
    databases().lock().values().cloned().collect()
}

/// The managed databases this process had open when it last forked, with its pid then. A
/// std mutex (not parking_lot): the child releases it without parking_lot's global tables,
/// which a parent thread may have held at the fork.
static FORK_RECORD: std::sync::Mutex<Option<(u32, Vec<PathBuf>)>> = std::sync::Mutex::new(None);

/// Held by the forking thread from just before `fork()` until just after, in parent and child.
pub(crate) type ForkRecordGuard = std::sync::MutexGuard<'static, Option<(u32, Vec<PathBuf>)>>;

/// Called just before `fork()` (the atfork prepare handler): notes which managed databases
/// are open, and keeps the record locked across the fork so that the child finds it
/// consistent and unlocked after the release.
pub(crate) fn note_fork() -> ForkRecordGuard {
    let pid = std::process::id();
    let from = FORKED_FROM.load(std::sync::atomic::Ordering::Acquire);
    // In a forked child, the registry's locks may have been copied locked (held by parent
    // threads that do not exist here), and its databases are the parent's: keep the record.
    let child = (from != 0 && from != pid) || !crate::stager::replicating_here();
    let open: Option<Vec<PathBuf>> = (!child).then(|| {
        all()
            .into_iter()
            .filter(|db| db.open_handles() > 0)
            .map(|db| db.path.clone())
            .collect()
    });
    let mut record = FORK_RECORD.lock().unwrap_or_else(|e| e.into_inner());
    match (open, record.as_mut()) {
        (Some(open), _) => *record = Some((pid, open)),
        (None, Some(r)) => r.0 = pid,
        (None, None) => {}
    }
    FORKED_FROM.store(pid, std::sync::atomic::Ordering::Release);
    record
}

/// The pid [`note_fork`] last ran in (0: never). Read without a lock, so that the parent never
/// takes [`FORK_RECORD`] outside a fork: a thread opening a file inside SQLite (under one of
/// its static mutexes, as a shared-cache open is) must not wait for the forking thread, which
/// waits for that mutex while it holds the record.
static FORKED_FROM: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// True in a process forked from one that had the managed database `path` open at the fork.
/// SQLite's per-process lock records of that file were copied into the child and are wrong
/// there, so the child must not open it (see [`crate::vfs::classify`]).
pub(crate) fn open_in_parent_at_fork(path: &Path) -> bool {
    let from = FORKED_FROM.load(std::sync::atomic::Ordering::Acquire);
    if from == 0 || from == std::process::id() {
        return false;
    }
    let record = FORK_RECORD.lock().unwrap_or_else(|e| e.into_inner());
    match &*record {
        Some((pid, open)) => *pid != std::process::id() && open.iter().any(|p| p == path),
        None => false,
    }
}

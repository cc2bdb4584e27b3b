//! Process-wide state: the configuration (loaded once) and one [`Database`] per managed path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::config::{self, Config, DbConfig};
use crate::database::Database;

static CONFIG: OnceLock<Result<Option<Config>, String>> = OnceLock::new();
static DATABASES: OnceLock<Mutex<HashMap<PathBuf, Arc<Database>>>> = OnceLock::new();

/// The configuration from `LITESTREAM_CONFIG` or `/etc/litestream.yml`, loaded on first use.
/// `Ok(None)`: no configuration file (only `?replica=` URIs are replicated).
pub fn config() -> Result<Option<&'static Config>, String> {
    CONFIG
        .get_or_init(|| config::load_default().map_err(|e| e.to_string()))
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

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
) -> Result<Option<Arc<Database>>, String> {
    if let Some(db) = get(path) {
        return Ok(Some(db));
    }
    let db_config: DbConfig = match uri_replica {
        Some(url) => config::from_replica_url(path, url).map_err(|e| e.to_string())?,
        None => match config()?.and_then(|c| c.find_db(path)) {
            Some(c) => c.clone(),
            None => match crate::replicate_all::db_config(path) {
                Some(c) => c,
                None => return Ok(None),
            },
        },
    };
    let client: std::sync::Arc<dyn crate::replica::ReplicaClient> =
        crate::replica::client_for(&db_config.replica)
            .map_err(|e| e.to_string())?
            .into();
    if uri_restore || db_config.restore_if_db_not_exists {
        // Without the registry lock: a restore can take long; it serializes per path itself.
        crate::bootstrap::restore_if_missing(path, &db_config, client.as_ref())
            .map_err(|e| e.to_string())?;
    }
    let mut dbs = databases().lock();
    if let Some(db) = dbs.get(path) {
        return Ok(Some(Arc::clone(db)));
    }
    let db = Database::open(path.to_path_buf(), db_config, client)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(db = %path.display(), replica = %db.client.describe(), "replicating");
    dbs.insert(path.to_path_buf(), Arc::clone(&db));
    crate::compactor::watch(&db);
    // Ship what a killed previous run left staged now, not at the first commit: `dirty` starts
    // set when segments are left, so captures would not notify until a sync cleared it.
    crate::uploader::notify(&db, false);
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

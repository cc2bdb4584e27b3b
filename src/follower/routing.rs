//! Process-wide read replicas, and how the VFS routes the open of a main database to one:
//!
//! 1. a path listed under `read-replicas:` in the configuration;
//! 2. `?mode=ro&replica=URL` on a file that is (or will be) a read replica;
//! 3. failover: a configured database whose file cannot be opened, with a read replica.
//!
//! In each case the file is opened read-only and a poller follows the replica.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::follow::{Follower, FollowerConfig};
use super::state::MetaFiles;
use super::FollowError;
use crate::config::{self, Config, ConfigError, DbConfig, ReadReplicaConfig};

/// `SQLITE_OPEN_READONLY` (sqlite3.h).
const OPEN_READONLY: i32 = 0x0000_0001;
/// `type:` values of a read replica that mean "a local SQLite file".
const LOCAL_KINDS: [&str; 2] = ["sqlite", "file"];

/// Where the VFS should open a main database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainRoute {
    /// Not a read replica: the usual path (replicated primary or pass-through).
    Normal,
    /// The file is a read replica: open it read-only.
    Replica,
    /// The primary cannot be opened: open this read replica instead, read-only. `name` is
    /// SQLite's database-name layout (4 NUL bytes, the path, 4 NUL bytes); pass `&name[4..]`.
    Failover { name: &'static [u8] },
}

struct Redirect {
    replica: PathBuf,
    name: &'static [u8],
}

fn followers() -> &'static Mutex<HashMap<PathBuf, Arc<Follower>>> {
    static F: OnceLock<Mutex<HashMap<PathBuf, Arc<Follower>>>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(HashMap::new()))
}

fn redirects() -> &'static Mutex<HashMap<PathBuf, Redirect>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Redirect>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `p` absolute, with its directory canonicalized when it exists (the file may not exist).
fn canonical(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .join(name),
        _ => abs,
    }
}

/// The configured database and read replica whose local file is `path`.
pub fn find_read_replica<'c>(
    config: &'c Config,
    path: &Path,
) -> Option<(&'c DbConfig, &'c ReadReplicaConfig)> {
    let want = canonical(path);
    config.dbs.iter().find_map(|db| {
        db.read_replicas
            .iter()
            .find(|rr| rr.path == path || canonical(&rr.path) == want)
            .map(|rr| (db, rr))
    })
}

/// The configured read replica called `name` (or whose path is `name`).
pub fn find_by_name<'c>(
    config: &'c Config,
    name: &str,
) -> Option<(&'c DbConfig, &'c ReadReplicaConfig)> {
    config.dbs.iter().find_map(|db| {
        db.read_replicas
            .iter()
            .find(|rr| rr.name.as_deref() == Some(name) || rr.path == Path::new(name))
            .map(|rr| (db, rr))
    })
}

/// The follower setup of a configured read replica.
pub fn follower_config(
    db: &DbConfig,
    rr: &ReadReplicaConfig,
) -> Result<FollowerConfig, FollowError> {
    if !LOCAL_KINDS.contains(&rr.kind.as_str()) {
        return Err(FollowError::Config(format!(
            "read replica {}: type {:?} is not supported; use `sqlite` (a local SQLite file)",
            rr.path.display(),
            rr.kind
        )));
    }
    let client = crate::replica::client_for(&db.replica)?;
    Ok(FollowerConfig {
        name: rr.name.clone(),
        path: rr.path.clone(),
        client: Arc::from(client),
        poll_interval: rr.poll_interval,
    })
}

/// The follower of the file `path`, opening and starting it on first use.
fn get_or_open(path: &Path, cfg: FollowerConfig) -> Result<Arc<Follower>, FollowError> {
    let key = canonical(path);
    let mut map = followers().lock();
    if let Some(f) = map.get(&key) {
        return Ok(Arc::clone(f));
    }
    let f = Follower::open(cfg)?;
    f.start();
    tracing::info!(path = %f.path.display(), replica = %f.client.describe(), "following read replica");
    map.insert(key, Arc::clone(&f));
    Ok(f)
}

/// A file the zero-config `mode=ro&replica=` form may follow: missing or empty, or made by a
/// follower; never a promoted or replicated primary.
fn may_follow(path: &Path) -> bool {
    let meta = MetaFiles::for_db(path);
    if meta.primary_state_path().exists() {
        return false;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => meta.state_path().exists(),
        _ => true,
    }
}

/// Why the primary at `path` cannot be used, if it cannot. Only `stat`: opening and closing a
/// descriptor of a database would drop every POSIX lock this process's connections hold on it.
fn primary_unavailable(path: &Path, db: &DbConfig) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some("not a regular file".to_string()),
        // A missing file restored on open is the history feature's business, not a failover.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && db.restore_if_db_not_exists => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Why the open of a main database cannot be routed: it is to be a read replica, and that
/// read replica cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The configuration file cannot be loaded.
    #[error("{0}")]
    Config(&'static ConfigError),
    /// The `replica=` URI parameter of a read-only open is not a valid replica URL.
    #[error("replica= URI parameter: {0}")]
    ReplicaUrl(#[from] ConfigError),
    /// The read replica's follower cannot start.
    #[error("read replica {}: {source}", path.display())]
    Follow { path: PathBuf, source: FollowError },
}

/// Decides how the VFS opens the main database `path` (SQLite's full name of it).
pub fn route_main(
    path: &Path,
    flags: i32,
    uri_replica: Option<&str>,
) -> Result<MainRoute, RouteError> {
    if followers().lock().contains_key(&canonical(path)) {
        return Ok(MainRoute::Replica);
    }
    let follow = |source: FollowError| RouteError::Follow {
        path: path.to_path_buf(),
        source,
    };
    let config = crate::config::global().map_err(RouteError::Config)?;
    if let Some((db, rr)) = config.and_then(|c| find_read_replica(c, path)) {
        let cfg = follower_config(db, rr).map_err(follow)?;
        get_or_open(path, cfg).map_err(follow)?;
        return Ok(MainRoute::Replica);
    }
    if let Some(url) = uri_replica {
        if flags & OPEN_READONLY != 0 && may_follow(path) {
            let rc = config::parse_replica_url(url)?;
            let client =
                crate::replica::client_for(&rc).map_err(|e| follow(FollowError::Replica(e)))?;
            let cfg = FollowerConfig {
                name: None,
                path: path.to_path_buf(),
                client: Arc::from(client),
                poll_interval: config::DEFAULT_POLL_INTERVAL,
            };
            get_or_open(path, cfg).map_err(follow)?;
            return Ok(MainRoute::Replica);
        }
    }
    let Some(db) = config.and_then(|c| c.replicated_db(path)) else {
        return Ok(MainRoute::Normal);
    };
    let Some(rr) = db.read_replicas.first() else {
        return Ok(MainRoute::Normal);
    };
    let Some(reason) = primary_unavailable(path, &db) else {
        return Ok(MainRoute::Normal);
    };
    if let Some(r) = redirects().lock().get(path) {
        return Ok(MainRoute::Failover { name: r.name });
    }
    let follower = follower_config(&db, rr).and_then(|cfg| get_or_open(&rr.path, cfg));
    match follower {
        Ok(f) => {
            let full = super::sys::full_pathname(&f.path).unwrap_or_else(|_| f.path.clone());
            let mut name = vec![0u8; 4];
            name.extend_from_slice(full.as_os_str().as_encoded_bytes());
            name.extend_from_slice(&[0; 4]);
            // Leaked on purpose: SQLite keeps pointers to it for as long as files are open,
            // and there is one per failed-over database per process.
            let name: &'static [u8] = Box::leak(name.into_boxed_slice());
            redirects().lock().insert(
                path.to_path_buf(),
                Redirect {
                    replica: full.clone(),
                    name,
                },
            );
            tracing::warn!(db = %path.display(), replica = %full.display(), reason = %reason, "primary database cannot be opened; serving its read replica read-only");
            Ok(MainRoute::Failover { name })
        }
        Err(FollowError::Restore(crate::restore::RestoreError::Plan(
            crate::restore::PlanError::NoFiles,
        ))) => {
            // A new deployment: no primary yet and nothing replicated to fail over to.
            tracing::debug!(db = %path.display(), "no primary and an empty replica: opening normally");
            Ok(MainRoute::Normal)
        }
        Err(e) => {
            tracing::error!(db = %path.display(), read_replica = %rr.path.display(), error = %e, "primary database cannot be opened and its read replica is not available either");
            Ok(MainRoute::Normal)
        }
    }
}

/// For a `-journal` or `-wal` of a failed-over primary: the same file of its read replica (so
/// that SQLite's hot-journal and WAL checks look beside the file actually opened).
pub fn redirect_sidecar(path: &str) -> Option<&'static [u8]> {
    let (db, suffix) = ["-journal", "-wal"]
        .iter()
        .find_map(|s| path.strip_suffix(s).map(|db| (db, *s)))?;
    let map = redirects().lock();
    let r = map.get(Path::new(db))?;
    let mut name = vec![0u8; 4];
    name.extend_from_slice(r.replica.as_os_str().as_encoded_bytes());
    name.extend_from_slice(suffix.as_bytes());
    name.extend_from_slice(&[0; 4]);
    // One leaked name per failed-over sidecar check is bounded by the opens of the process;
    // cache them so repeated checks reuse one allocation.
    static NAMES: OnceLock<Mutex<HashMap<Vec<u8>, &'static [u8]>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(|| Mutex::new(HashMap::new())).lock();
    let leaked = *names
        .entry(name.clone())
        .or_insert_with(|| Box::leak(name.into_boxed_slice()));
    Some(leaked)
}

/// The follower serving the database SQLite calls `path` (a read replica's own file, or a
/// failed-over primary).
pub fn for_db_path(path: &Path) -> Option<Arc<Follower>> {
    let map = followers().lock();
    if let Some(f) = map.get(&canonical(path)) {
        return Some(Arc::clone(f));
    }
    let replica = redirects().lock().get(path).map(|r| r.replica.clone())?;
    map.get(&canonical(&replica)).cloned()
}

/// How long `read-replica sync` waits for readers before giving up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_config_never_follows_a_primary_or_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        assert!(may_follow(&db), "missing: restore it");
        std::fs::write(&db, b"").unwrap();
        assert!(may_follow(&db), "empty: restore it");
        std::fs::write(&db, b"SQLite format 3\0...").unwrap();
        assert!(!may_follow(&db), "someone's database");
        let meta = MetaFiles::for_db(&db);
        meta.create().unwrap();
        std::fs::write(meta.state_path(), b"{}").unwrap();
        assert!(may_follow(&db), "a follower's file");
        std::fs::write(meta.primary_state_path(), b"{}").unwrap();
        assert!(!may_follow(&db), "promoted");
    }

    #[test]
    fn unsupported_kind_is_a_clear_error() {
        let db = config::from_replica_url(Path::new("/x/p.db"), "file:///x/r").unwrap();
        let rr = ReadReplicaConfig {
            name: Some("n".into()),
            kind: "postgres".into(),
            path: "/x/r.db".into(),
            poll_interval: Duration::from_secs(1),
        };
        let err = follower_config(&db, &rr).err().unwrap();
        assert!(err.to_string().contains("`sqlite`"), "{err}");
    }
}

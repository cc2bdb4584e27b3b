//! Writer fencing (design: `docs/fencing.md`): a replica path belongs to one database lineage,
//! written by one process at a time.
//!
//! 1. **Lineage**: a database with no local record of its position in the replica (`state.json`
//!    names another replica, or no TXID yet) never writes into a non-empty replica.
//! 2. **Lease**: the writing process holds `lease.json` at the replica root, created with
//!    [`WriteCondition::IfAbsent`] and renewed or taken over with [`WriteCondition::IfMatch`]
//!    (compare-and-swap), valid for [`LEASE_TTL`]. Another live holder's lease makes this process
//!    refuse before writing anything; an expired lease, or one whose holder process is gone
//!    from this machine, is taken over.
//!
//! The uploader calls [`check`] before every sync and the compactor before its jobs; both
//! refuse to touch the replica on error. Application writes never fail because of fencing.

mod lease;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use thiserror::Error;

pub use lease::{Lease, LEASE_OBJECT};

use crate::database::Database;
use crate::replica::{ReplicaClient, ReplicaError, WriteCondition};
use crate::staging::State;
use crate::TxId;

/// How long a lease lasts without renewal: how long a crashed writer on another machine keeps
/// a new writer waiting, and long enough that a slow store cannot expire a live writer's lease
/// between renewals. A lease is renewed by the check before a write once less than half of it
/// is left (one conditional PUT per 15 s under steady writes), and never while the database is
/// idle: an idle writer's lease lapses, and its next write takes it again.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Conditional-write attempts when another process races for the lease at the same moment.
const ACQUIRE_ATTEMPTS: usize = 3;

#[derive(Debug, Error)]
pub enum FenceError {
    #[error(
        "{db}: replica {replica} already holds another database's history (up to TXID \
         {txid:016x}) and this database has no record of its position in it, so nothing is \
         written there (the database itself keeps working). Restore from the replica first \
         (litestream restore -o {db} {replica}, or restore-if-db-not-exists: true / the URI \
         parameter restore=1 with the database absent), or choose another replica path"
    )]
    ForeignReplica {
        db: PathBuf,
        replica: String,
        txid: TxId,
    },
    #[error(
        "{db}: replica {replica} is being written by another process ({holder}, database \
         {holder_db}; its lease expires in {expires_in_s} s unless renewed); this process does \
         not write to it. Stop the other writer, or wait for it to exit"
    )]
    Held {
        db: PathBuf,
        replica: String,
        holder: String,
        holder_db: String,
        expires_in_s: i64,
    },
    #[error("{db}: cannot check the writer lease of replica {replica}: {source}")]
    Lease {
        db: PathBuf,
        replica: String,
        source: ReplicaError,
    },
}

/// This process's hold on one replica's lease.
struct Held {
    version: String,
    expires_ms: i64,
    acquired_ms: i64,
}

struct DbLease {
    db: PathBuf,
    client: Arc<dyn ReplicaClient>,
    held: Option<Held>,
    /// Why the last check refused (a short key, so a refusal is logged once, not per retry).
    refused: Option<String>,
    /// The lease was acquired from a state that was not this process's own lease (absent,
    /// expired, released, another holder's): whoever held it may have written to the replica
    /// since this process last looked. Taken by [`took_over`].
    took_over: bool,
}

type Leases = Mutex<HashMap<PathBuf, Arc<Mutex<DbLease>>>>;

fn leases() -> &'static Leases {
    static L: OnceLock<Leases> = OnceLock::new();
    L.get_or_init(|| Mutex::new(HashMap::new()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn entry(db: &Path, client: &Arc<dyn ReplicaClient>) -> Arc<Mutex<DbLease>> {
    let mut map = leases().lock();
    Arc::clone(map.entry(db.to_path_buf()).or_insert_with(|| {
        Arc::new(Mutex::new(DbLease {
            db: db.to_path_buf(),
            client: Arc::clone(client),
            held: None,
            refused: None,
            took_over: false,
        }))
    }))
}

/// True when `state` records a position of this database in `replica` (it sealed a TXID for
/// it, or was restored from it).
pub fn has_position(state: &State, replica: &str) -> bool {
    state.replica == replica && state.txid > 0
}

/// The lineage rule: refuses a non-empty replica this database has no position in.
pub fn check_lineage(
    db: &Path,
    client: &dyn ReplicaClient,
    state: &State,
) -> Result<(), FenceError> {
    let replica = client.describe();
    if has_position(state, &replica) {
        return Ok(());
    }
    let txid = client.max_txid().map_err(|source| FenceError::Lease {
        db: db.to_path_buf(),
        replica: replica.clone(),
        source,
    })?;
    if txid > 0 {
        return Err(FenceError::ForeignReplica {
            db: db.to_path_buf(),
            replica,
            txid,
        });
    }
    Ok(())
}

/// Everything that must hold before this process writes to `db`'s replica: the lineage rule and
/// the lease (acquired or renewed when less than half of it is left).
pub fn check(db: &Database, state: &State) -> Result<(), FenceError> {
    check_lineage(&db.path, db.client.as_ref(), state)?;
    ensure_lease(&db.path, &db.client)
}

impl FenceError {
    /// What makes two refusals the same for logging: the rule and the holder.
    fn key(&self) -> String {
        match self {
            FenceError::ForeignReplica { .. } => "lineage".to_string(),
            FenceError::Held { holder, .. } => format!("held by {holder}"),
            FenceError::Lease { source, .. } => format!("lease error {}", source.is_transient()),
        }
    }
}

/// [`check`], logging a refusal once (until it changes or clears) and remembering it for
/// [`poll`]. The uploader skips a sync when this is false: what is captured stays staged.
/// A store that cannot be reached counts as "not now" without a refusal being logged (the
/// uploader reports that as its sync error).
pub fn permits(db: &Database, state: &State) -> bool {
    gate(db, state).unwrap_or(false)
}

/// The uploader's gate: `Ok(true)` to write, `Ok(false)` when a fencing rule refuses (logged
/// once, see [`permits`]), and `Err` when the check itself could not reach the store. That is
/// an ordinary sync failure (the store is down, not another writer present): the uploader
/// reports it as the last error and retries with its backoff, as for a failed upload.
pub fn gate(db: &Database, state: &State) -> Result<bool, ReplicaError> {
    match check(db, state) {
        Err(FenceError::Lease { source, .. }) => Err(source),
        other => Ok(refuse_or_permit(db, other)),
    }
}

fn refuse_or_permit(db: &Database, result: Result<(), FenceError>) -> bool {
    let e = entry(&db.path, &db.client);
    let mut l = e.lock();
    match result {
        Ok(()) => {
            if l.refused.take().is_some() {
                tracing::info!(db = %db.path.display(), replica = %db.client.describe(), "writer fence cleared; replicating again");
            }
            true
        }
        Err(err) => {
            let key = err.key();
            if l.refused.as_deref() != Some(key.as_str()) {
                tracing::error!(db = %db.path.display(), error = %err, "not replicating");
            } else {
                tracing::debug!(db = %db.path.display(), error = %err, "still not replicating");
            }
            l.refused = Some(key);
            false
        }
    }
}

/// [`permits`] with the database's current state.
pub fn permits_db(db: &Database) -> bool {
    let state = db.sync_state.lock().state.clone();
    permits(db, &state)
}

/// True while the last fence check of `db` was refused.
pub fn refused(db: &Path) -> bool {
    leases()
        .lock()
        .get(db)
        .is_some_and(|e| e.lock().refused.is_some())
}

/// Called periodically (by the compactor thread): re-checks a database whose last check was
/// refused, and asks the uploader to ship what is staged once the fence clears.
pub fn poll(db: &Arc<Database>) {
    if refused(&db.path) && permits_db(db) {
        db.request_sync(false);
    }
}

/// Holds (acquiring or renewing as needed) the lease of `client` for `db`.
pub fn ensure_lease(db: &Path, client: &Arc<dyn ReplicaClient>) -> Result<(), FenceError> {
    let e = entry(db, client);
    let mut l = e.lock();
    let now = now_ms();
    let half = (LEASE_TTL / 2).as_millis() as i64;
    if l.held.as_ref().is_some_and(|h| h.expires_ms - now > half) {
        return Ok(());
    }
    acquire(&mut l, now)
}

/// True once after this process acquired `db`'s lease from a state that was not its own lease
/// (first acquisition, or taken over after it lapsed): the replica may have moved without this
/// process, so the uploader compares its position with the replica again before writing.
pub fn took_over(db: &Path) -> bool {
    let Some(e) = leases().lock().get(db).cloned() else {
        return false;
    };
    let mut l = e.lock();
    std::mem::take(&mut l.took_over)
}

fn lease_err(l: &DbLease, source: ReplicaError) -> FenceError {
    FenceError::Lease {
        db: l.db.clone(),
        replica: l.client.describe(),
        source,
    }
}

fn acquire(l: &mut DbLease, now: i64) -> Result<(), FenceError> {
    let db = l.db.display().to_string();
    let ttl = LEASE_TTL.as_millis() as i64;
    let had = l.held.take();
    if let Some(h) = &had {
        // Renewal: a write conditional on the version we wrote last needs no read first. It
        // fails only if someone else wrote the lease since; then read it, as below.
        let lease = Lease {
            acquired_ms: h.acquired_ms,
            ..lease::mine(&db, now, now + ttl)
        };
        let cond = WriteCondition::IfMatch(h.version.clone());
        match l.client.write_object(LEASE_OBJECT, &lease.encode(), cond) {
            Ok(version) => {
                l.held = Some(Held {
                    version,
                    expires_ms: now + ttl,
                    acquired_ms: h.acquired_ms,
                });
                return Ok(());
            }
            Err(ReplicaError::Precondition { .. } | ReplicaError::NotFound { .. }) => {}
            Err(e) => {
                l.held = had;
                return Err(lease_err(l, e));
            }
        }
    }
    for _ in 0..ACQUIRE_ATTEMPTS {
        let (cond, acquired_ms, ours) = match l.client.read_object(LEASE_OBJECT) {
            Err(ReplicaError::NotFound { .. }) => (WriteCondition::IfAbsent, now, false),
            Err(e) => return Err(lease_err(l, e)),
            Ok(obj) => match Lease::parse(&obj.data) {
                Ok(cur) if cur.is_mine(&db) => {
                    (WriteCondition::IfMatch(obj.version), cur.acquired_ms, true)
                }
                Ok(cur) if !cur.expired(now) && !cur.holder_is_dead_here() => {
                    if had.is_some() {
                        tracing::error!(db = %db, holder = %cur.owner, "writer lease lost to another process; no longer writing to the replica");
                    }
                    return Err(FenceError::Held {
                        db: l.db.clone(),
                        replica: l.client.describe(),
                        holder: cur.owner,
                        holder_db: cur.db,
                        expires_in_s: (cur.expires_ms - now + 999) / 1000,
                    });
                }
                Ok(stale) => {
                    if stale.expires_ms > 0 {
                        tracing::warn!(db = %db, holder = %stale.owner, expired = stale.expired(now), "taking over a stale writer lease");
                    }
                    (WriteCondition::IfMatch(obj.version), now, false)
                }
                // It cannot name a live holder, so it does not fence; but something other than
                // a writer put it there, which the user should know about.
                Err(e) => {
                    tracing::warn!(db = %db, replica = %l.client.describe(), object = LEASE_OBJECT, error = %e, "the replica's writer lease is not a lease (corrupt, or written by something else); replacing it");
                    (WriteCondition::IfMatch(obj.version), now, false)
                }
            },
        };
        let lease = Lease {
            acquired_ms,
            ..lease::mine(&db, now, now + ttl)
        };
        match l.client.write_object(LEASE_OBJECT, &lease.encode(), cond) {
            Ok(version) => {
                if had.is_none() {
                    tracing::info!(db = %db, replica = %l.client.describe(), "writer lease acquired");
                }
                l.held = Some(Held {
                    version,
                    expires_ms: now + ttl,
                    acquired_ms,
                });
                l.took_over |= !ours;
                return Ok(());
            }
            // Someone changed the lease between our read and write: read it again.
            Err(
                ReplicaError::AlreadyExists { .. }
                | ReplicaError::Precondition { .. }
                | ReplicaError::NotFound { .. },
            ) => continue,
            Err(e) => return Err(lease_err(l, e)),
        }
    }
    Err(lease_err(
        l,
        ReplicaError::Transient {
            key: LEASE_OBJECT.to_string(),
            reason: "the lease kept changing while acquiring it".to_string(),
        },
    ))
}

/// Releases every lease this process holds (at exit): each is rewritten as expired, only if it
/// is still ours, so the next writer takes over at once.
/// Releases `db`'s lease if this process holds it (its stager hands the database over to
/// another process of this machine).
pub fn release_db(db: &Path) {
    let entry = leases().lock().get(db).cloned();
    if let Some(e) = entry {
        release(&mut e.lock());
    }
}

pub fn release_all() {
    let entries: Vec<_> = leases().lock().values().cloned().collect();
    for e in entries {
        release(&mut e.lock());
    }
}

fn release(l: &mut DbLease) {
    let Some(h) = l.held.take() else { return };
    let db = l.db.display().to_string();
    let released = lease::mine(&db, now_ms(), 0);
    match l.client.write_object(
        LEASE_OBJECT,
        &released.encode(),
        WriteCondition::IfMatch(h.version),
    ) {
        Ok(_) => tracing::debug!(db = %db, "writer lease released"),
        Err(e) => tracing::debug!(db = %db, error = %e, "writer lease not released"),
    }
}

#[cfg(test)]
mod tests;

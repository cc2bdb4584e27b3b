//! One managed database: its configuration, capture state, staging and the hooks the VFS calls.
//!
//! Threads: the application's threads call the hooks (under SQLite's own locks); the uploader
//! thread calls [`Database::sync`]. `inner` (capture + active segment) is held only for the short
//! local I/O of a capture; `sync_state` only by the uploader and status readers.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use peers::StagerWait;

use parking_lot::Mutex;

use crate::capture::{CaptureError, CaptureState, WalIndexMark};
use crate::config::DbConfig;
use crate::pending::{CommitAction, LazyBase, PendingCommits};
use crate::replica::ReplicaClient;
use crate::staging::{
    DbFingerprint, MetaDir, Record, SegmentReader, SegmentWriter, StagingError, State,
};

/// Replication position and bookkeeping of one database, owned by the uploader thread
/// (`crate::uploader`), read by the compactor, fencing and status.
pub struct SyncState {
    pub state: State,
    /// The replica was compared with `state` in this process.
    pub(crate) reconciled: bool,
    /// Batches are discarded until one holds a full image (the chain restarts).
    pub(crate) discard_until_full: bool,
    /// Last successful sync (for the schedule and the status).
    pub last_sync: Option<Instant>,
    pub last_error: Option<String>,
    pub(crate) backoff: Duration,
}

impl SyncState {
    pub fn new(state: State) -> SyncState {
        SyncState {
            state,
            reconciled: false,
            discard_until_full: false,
            last_sync: None,
            last_error: None,
            backoff: Duration::ZERO,
        }
    }
}

/// What a database asks of whoever ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// New work: sync at the next `sync-interval` boundary.
    Sync,
    /// Sync now, ignoring `sync-interval` (the last handle closed).
    SyncNow,
    /// Copy the commits recorded lazily into staging soon (no seal, no upload), so that little
    /// is left for a WAL restart to copy on the application's thread.
    Copy,
}

/// Hands a database's [`Request`] to whoever ships it. The registry passes the uploader's
/// `notify` at open, so this layer never names the uploader.
pub type Notify = fn(&Arc<Database>, Request);

/// Capture and active-segment state, guarded by [`Database::inner`].
struct Inner {
    capture: CaptureState,
    /// The active segment; `None` while no connection has the database open.
    segment: Option<SegmentWriter>,
    /// Sequence number of the active segment (the next one to create when `segment` is None).
    segment_seq: u64,
    /// Our own read-only descriptors. The database file descriptor is closed only when no
    /// SQLite handle of this process has the database open: closing a descriptor drops every
    /// POSIX lock the process holds on the file.
    db_file: Option<File>,
    wal_file: Option<(File, u64, u64)>,
    /// Open main-database handles of SQLite in this process.
    open_handles: usize,
    /// Replication stopped for this database (the reason is in the log and the status).
    disabled: Option<String>,
    /// Validation mode (`LITESTREAM_VALIDATE=1`): checks each capture against the database.
    validator: Option<crate::validate::Validator>,
    /// A closed-generation marker was staged by this capture: work for the uploader even
    /// without a transaction (see [`Database::capture_now`]).
    marked_closed: bool,
    /// This process's hold on the stager lock ([`crate::stager`]); `None` while another
    /// process stages the database.
    stager: Option<crate::stager::StagerLock>,
    /// While this process stages: the listener for other processes' commits ([`crate::wake`]).
    wake: Option<crate::wake::Listener>,
    /// Rate limit of the "capture failed" line ([`capture_errors`]).
    capture_errors: crate::logging::RepeatLimiter,
}

pub struct Database {
    /// The database path as SQLite names it.
    pub path: PathBuf,
    pub config: DbConfig,
    pub meta: MetaDir,
    pub client: Arc<dyn ReplicaClient>,
    inner: Mutex<Inner>,
    /// Replication position; owned by the uploader thread (see `uploader`).
    pub(crate) sync_state: Mutex<SyncState>,
    /// Commits recorded at their commit point, copied into staging by the uploader (a leaf lock:
    /// nothing else is taken while it is held).
    pending: Mutex<PendingCommits>,
    /// Set when this process took the stager lock over from another one: the uploader reloads
    /// `sync_state` from `state.json` before its next sync.
    reload_sync_state: AtomicBool,
    /// Set by a capture that staged something, cleared by the uploader when it takes the work.
    /// Only the capture that sets it (false → true) notifies the uploader, so every path that
    /// stages data must go through [`Database::capture_now`]'s check.
    pub(crate) dirty: AtomicBool,
    /// What the replica has not acknowledged yet, since when; last sync result (`progress`).
    pub(crate) progress: crate::progress::Progress,
    /// L0 files this process stored in the replica: the compactor's cue that its jobs have
    /// something new to read (`compactor::activity`).
    pub(crate) uploads: AtomicU64,
    /// Wakes the uploader (see [`Notify`]).
    notify: Notify,
    /// This database (for the wake listener's thread, which must not keep it alive).
    me: Weak<Database>,
    /// Mirrors `inner.stager` (held here), readable without `inner`'s lock.
    staging_here: AtomicBool,
    /// Several processes (`peers`, times in ns since the epoch): every commit before
    /// `recorded_ns` is at or below the newest recorded mark (updated under `pending`'s lock);
    /// every commit before `captured_ns` is staged; every one before `covered_ns` is in the
    /// replica (published for the other processes).
    recorded_ns: AtomicI64,
    captured_ns: AtomicI64,
    covered_ns: AtomicI64,
    /// The status last published for the other processes (rewritten only when it changed).
    published: Mutex<Option<crate::shared_status::SharedStatus>>,
    /// While another process stages: this process's commits not known to be replicated.
    own: Mutex<crate::shared_status::OwnCommits>,
    /// While another process stages: wakes it at each commit of this process.
    waker: crate::wake::Sender,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The database file's identity (length, mtime), see [`DbFingerprint`].
pub(crate) fn fingerprint(path: &Path) -> Option<DbFingerprint> {
    let m = std::fs::metadata(path).ok()?;
    Some(DbFingerprint {
        len: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    })
}

/// Opens the `-wal` read-only without access-time updates where allowed (the owner of the
/// file): every capture reads right after SQLite wrote, so each read would otherwise dirty
/// the inode. Falls back to a plain open (e.g. another user's database).
fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

/// True in a child forked after replication started. The hooks then do nothing: they take
/// none of our locks (a parent thread may have held one at the fork, and it would never be
/// released here), and what the child commits is in the WAL, where the parent captures it.
fn forked_child() -> bool {
    !crate::stager::replicating_here()
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Where a lazy commit may continue from (see [`crate::pending`]): only in the stager, with
/// both descriptors open, no validation, and a capture that stands in the WAL generation whose
/// header it read last with nothing unusual due.
fn lazy_base(inner: &Inner) -> Option<LazyBase> {
    let ready = inner.validator.is_none()
        && inner.disabled.is_none()
        && inner.db_file.is_some()
        && inner.wal_file.is_some()
        && inner.stager.as_ref().is_some_and(|l| l.held_here());
    if !ready {
        return None;
    }
    inner.capture.lazy_base()
}

impl Database {
    /// Opens the meta directory. When this process can take the stager lock
    /// ([`crate::stager`]), it recovers the capture position from staged data; otherwise
    /// another process stages this database and this one stays on standby until it can take
    /// the lock (see [`Database::capture_now`]).
    pub fn open(
        path: PathBuf,
        config: DbConfig,
        client: Arc<dyn ReplicaClient>,
        notify: Notify,
    ) -> Result<Arc<Database>, StagingError> {
        let meta = MetaDir::for_db(&path, config.meta_path.as_deref());
        meta.create_root()?;
        let stager = if crate::stager::replicating_here() {
            crate::stager::try_lock(&meta)?
        } else {
            None
        };
        let state = meta.load_state()?.unwrap_or_default();
        let progress = crate::progress::Progress::new(state.txid, state.replicated_txid);
        let mut inner = Inner {
            capture: CaptureState::default(),
            segment: None,
            segment_seq: state.sealed_segment + 1,
            db_file: None,
            wal_file: None,
            open_handles: 0,
            disabled: None,
            validator: crate::validate::enabled().then(crate::validate::Validator::new),
            marked_closed: false,
            stager: None,
            wake: None,
            capture_errors: capture_errors::new_limiter(),
        };
        let mut staged = false;
        if let Some(lock) = stager {
            staged = takeover::recover(&path, &meta, &progress, &mut inner)?;
            inner.stager = Some(lock);
        } else {
            tracing::info!(db = %path.display(), "another process stages this database; this one captures nothing until it can take over");
        }
        let is_stager = inner.stager.is_some();
        let db = Arc::new_cyclic(|me| Database {
            path,
            meta,
            client,
            inner: Mutex::new(inner),
            sync_state: Mutex::new(SyncState::new(state)),
            pending: Mutex::new(PendingCommits::default()),
            reload_sync_state: AtomicBool::new(false),
            dirty: AtomicBool::new(staged),
            progress,
            uploads: AtomicU64::new(0),
            config,
            notify,
            me: me.clone(),
            staging_here: AtomicBool::new(false),
            recorded_ns: AtomicI64::new(0),
            captured_ns: AtomicI64::new(0),
            covered_ns: AtomicI64::new(0),
            published: Mutex::new(None),
            own: Mutex::new(Default::default()),
            waker: Default::default(),
        });
        if is_stager {
            db.listen_for_wakes(&mut db.inner.lock());
        }
        Ok(db)
    }

    /// Tells the uploader that this database has work (see [`Notify`]).
    pub fn request_sync(self: &Arc<Self>, urgent: bool) {
        (self.notify)(
            self,
            if urgent {
                Request::SyncNow
            } else {
                Request::Sync
            },
        );
    }

    /// Main-database handles of SQLite open in this process.
    pub(crate) fn open_handles(&self) -> usize {
        self.inner.lock().open_handles
    }

    /// A main-database handle is about to be opened by SQLite.
    pub fn handle_opened(&self) {
        if forked_child() {
            return;
        }
        self.inner.lock().open_handles += 1;
    }

    /// A main-database handle was closed. After the last one, our descriptors are closed and
    /// the active segment is flushed, and the uploader is asked to sync now.
    pub fn handle_closed(self: &Arc<Self>) {
        if forked_child() {
            return;
        }
        let last = {
            let mut inner = self.inner.lock();
            inner.open_handles = inner.open_handles.saturating_sub(1);
            if inner.open_handles == 0 {
                // Copy what was recorded lazily while our descriptors are still open.
                let recorded = self.recorded_with_ns();
                if let Some((mark, at_ms, seen_ns)) = recorded {
                    // (The `-wal` descriptor may have been closed while idle: reopened.)
                    if inner.db_file.is_some() {
                        self.capture_in(&mut inner, false, false, Some(mark), at_ms, seen_ns);
                    }
                }
                self.pending.lock().captured(None);
                if let Some(v) = inner.validator.as_mut() {
                    crate::validate::log_summary(v, &self.path);
                }
                inner.db_file = None;
                inner.wal_file = None;
                inner.segment = None;
                true
            } else {
                false
            }
        };
        if last {
            self.request_sync(true);
        }
    }

    /// The commit point of a connection: the WAL write lock is about to be released (or the
    /// transaction committed in exclusive locking mode).
    /// `mark`: the wal-index header's committed frame count, when the shm is mapped.
    /// Usually only records the mark (lazy capture, [`crate::pending`]): the uploader copies
    /// the frames later.
    pub fn on_commit(self: &Arc<Self>, mark: Option<WalIndexMark>) {
        if forked_child() {
            return;
        }
        // Taken while SQLite holds the WAL write lock: every commit (of any process) before it
        // is at or below `mark`.
        let seen_ns = crate::shared_status::now_ns();
        let now = now_ms();
        let action = self.record(mark, now, seen_ns);
        match action {
            CommitAction::Recorded { copy } => {
                self.progress.committed(now);
                if !self.dirty.swap(true, Ordering::AcqRel) {
                    self.request_sync(false);
                }
                if copy {
                    (self.notify)(self, Request::Copy);
                }
            }
            CommitAction::Nothing => {}
            CommitAction::CaptureNow => {
                self.capture_now_seen(true, false, mark, seen_ns);
                if mark.is_some() && !self.staging_here() {
                    self.committed_elsewhere(seen_ns, now);
                }
            }
        }
    }

    /// SQLite is about to write a new WAL header (restart) or truncate the WAL: everything in
    /// the old generation is checkpointed. Capture what is left, then mark the generation
    /// closed so the next one continues the chain.
    pub fn before_wal_reset(self: &Arc<Self>) {
        if forked_child() {
            return;
        }
        self.capture_now(false, true, None);
    }

    /// SQLite is about to delete the WAL: the last connection is closing after a complete
    /// checkpoint and holds the database exclusively, so the database file is stable and a
    /// full image may be staged here (there is no later commit point to defer it to: e.g. the
    /// last of several processes closing after another one restarted the WAL).
    pub fn on_wal_deleted(self: &Arc<Self>) {
        if forked_child() {
            return;
        }
        self.capture_now(true, true, None);
        self.inner.lock().wal_file = None;
    }

    /// Called by the uploader: closes the active segment (the next capture starts a new one)
    /// and returns the sequence numbers of all closed segments, oldest first.
    pub(crate) fn rotate_segments(&self, sealed_through: u64) -> Result<Vec<u64>, StagingError> {
        let mut inner = self.inner.lock();
        let active = inner.segment_seq;
        if let Some(seg) = inner.segment.take() {
            if seg.is_empty() {
                inner.segment = Some(seg);
            } else {
                drop(seg);
                inner.segment_seq = active + 1;
                if inner.open_handles > 0 {
                    inner.segment = Some(SegmentWriter::open(&self.meta, inner.segment_seq)?);
                }
            }
        } else {
            // No connection open: every segment on disk is closed.
            let on_disk = self.meta.list_segments()?;
            if on_disk.last().is_some_and(|&s| s >= active) {
                inner.segment_seq = on_disk.last().copied().unwrap_or(active) + 1;
            }
        }
        let next_active = inner.segment_seq;
        drop(inner);
        Ok(self
            .meta
            .list_segments()?
            .into_iter()
            .filter(|&s| s > sealed_through && s < next_active)
            .collect())
    }

    /// SQLite opened a rollback journal: the database is (still) in rollback mode, as while a
    /// new database is switched to WAL. Its history can no longer be proven from the WAL.
    pub fn on_rollback_journal(&self) {
        if forked_child() {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.capture.pos.is_some() && inner.capture.need_full.is_none() {
            tracing::warn!(db = %self.path.display(), "database is not in WAL mode; litestream needs journal_mode=WAL");
        }
        inner
            .capture
            .require_full("database was written outside WAL mode");
        self.pending.lock().disable();
    }

    /// Asks the next capture to stage a full image (the uploader decided the chain restarts).
    /// Lazy commits stop until then: a full image can only be staged at a commit point.
    pub(crate) fn require_full(&self, reason: &str) {
        let mut inner = self.inner.lock();
        inner.capture.require_full(reason);
        self.pending.lock().disable();
    }
}

mod capture_errors;
mod idle;
mod peers;
mod takeover;
mod wal_copy;

#[cfg(test)]
mod tests;

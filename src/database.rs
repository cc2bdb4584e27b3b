//! One managed database: its configuration, capture state, staging and the hooks the VFS calls.
//!
//! Threads: the application's threads call the hooks (under SQLite's own locks); the uploader
//! thread calls [`Database::sync`]. `inner` (capture + active segment) is held only for the short
//! local I/O of a capture; `sync_state` only by the uploader and status readers.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::capture::{CaptureError, CaptureState, WalIndexMark};
use crate::config::DbConfig;
use crate::replica::ReplicaClient;
use crate::staging::{DbFingerprint, MetaDir, Record, SegmentReader, SegmentWriter, StagingError};

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
}

pub struct Database {
    /// The database path as SQLite names it.
    pub path: PathBuf,
    pub config: DbConfig,
    pub meta: MetaDir,
    pub client: Arc<dyn ReplicaClient>,
    inner: Mutex<Inner>,
    /// Replication position; owned by the uploader thread (see `uploader`).
    pub(crate) sync_state: Mutex<crate::uploader::SyncState>,
    /// Set by a capture that staged something, cleared by the uploader when it takes the work.
    /// Only the capture that sets it (false → true) notifies the uploader, so every path that
    /// stages data must go through [`Database::capture_now`]'s check.
    pub(crate) dirty: AtomicBool,
    /// What the replica has not acknowledged yet, since when; last sync result (`progress`).
    pub(crate) progress: crate::progress::Progress,
    /// L0 files this process stored in the replica: the compactor's cue that its jobs have
    /// something new to read (`compactor::activity`).
    pub(crate) uploads: AtomicU64,
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

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

impl Database {
    /// Opens the meta directory and recovers the capture position from staged data.
    pub fn open(
        path: PathBuf,
        config: DbConfig,
        client: Arc<dyn ReplicaClient>,
    ) -> Result<Arc<Database>, StagingError> {
        let meta = MetaDir::for_db(&path, config.meta_path.as_deref());
        meta.create_dirs()?;
        let state = meta.load_state()?.unwrap_or_default();
        let mut capture = CaptureState {
            pos: state.wal,
            closed: state.closed,
            need_full: None,
            db_size: state.commit,
            page_size: state.page_size,
            scratch: Default::default(),
        };
        let progress = crate::progress::Progress::new(state.txid, state.replicated_txid);
        crate::progress::recover_sealed(&progress, &meta, state.replicated_txid);
        // Replay commit and closed records of segments not sealed yet.
        let segments: Vec<u64> = meta
            .list_segments()?
            .into_iter()
            .filter(|s| *s > state.sealed_segment)
            .collect();
        for &seq in &segments {
            let mut r = SegmentReader::open(&meta.segment_path(seq))?;
            let mut page_bytes = 0u64;
            while let Some(rec) = r.next_record()? {
                match rec {
                    Record::Page { len, .. } => page_bytes += u64::from(len),
                    Record::Commit(c) => {
                        progress.captured(seq, 1, std::mem::take(&mut page_bytes), c.timestamp_ms);
                        capture.pos = Some(c.wal);
                        capture.closed = None;
                        capture.db_size = c.db_size;
                        capture.page_size = c.page_size;
                    }
                    Record::Closed(f) => capture.closed = Some(f),
                }
            }
        }
        if capture.pos.is_none() {
            capture.require_full("no replicated position yet");
        } else if let Some(f) = capture.closed {
            // The WAL generation had ended cleanly: the database file must be as we left it.
            let wal_has_frames = std::fs::metadata(wal_path(&path))
                .map(|m| m.len() > 32)
                .unwrap_or(false);
            if fingerprint(&path) != Some(f) && !wal_has_frames {
                capture.require_full("database changed without litestream since the last run");
            }
        }
        let segment_seq = segments
            .last()
            .copied()
            .unwrap_or(state.sealed_segment + 1)
            .max(state.sealed_segment + 1);
        let db = Database {
            path,
            meta,
            client,
            inner: Mutex::new(Inner {
                capture,
                segment: None,
                segment_seq,
                db_file: None,
                wal_file: None,
                open_handles: 0,
                disabled: None,
                validator: crate::validate::enabled().then(crate::validate::Validator::new),
                marked_closed: false,
            }),
            sync_state: Mutex::new(crate::uploader::SyncState::new(state)),
            dirty: AtomicBool::new(!segments.is_empty()),
            progress,
            uploads: AtomicU64::new(0),
            config,
        };
        Ok(Arc::new(db))
    }

    /// A main-database handle is about to be opened by SQLite.
    pub fn handle_opened(&self) {
        self.inner.lock().open_handles += 1;
    }

    /// A main-database handle was closed. After the last one, our descriptors are closed and
    /// the active segment is flushed, and the uploader is asked to sync now.
    pub fn handle_closed(self: &Arc<Self>) {
        let last = {
            let mut inner = self.inner.lock();
            inner.open_handles = inner.open_handles.saturating_sub(1);
            if inner.open_handles == 0 {
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
            crate::uploader::notify(self, true);
        }
    }

    /// The commit point of a connection: the WAL write lock is about to be released (or the
    /// transaction committed in exclusive locking mode).
    /// `mark`: the wal-index header's committed frame count, when the shm is mapped.
    pub fn on_commit(self: &Arc<Self>, mark: Option<WalIndexMark>) {
        self.capture_now(true, false, mark);
    }

    /// SQLite is about to write a new WAL header (restart) or truncate the WAL: everything in
    /// the old generation is checkpointed. Capture what is left, then mark the generation
    /// closed so the next one continues the chain.
    pub fn before_wal_reset(self: &Arc<Self>) {
        self.capture_now(false, true, None);
    }

    /// SQLite deleted the WAL (last connection closed after a full checkpoint).
    pub fn on_wal_deleted(self: &Arc<Self>) {
        self.capture_now(false, true, None);
        self.inner.lock().wal_file = None;
    }

    /// Captures what SQLite committed since the last capture; true when this capture handed
    /// new work to the uploader.
    fn capture_now(
        self: &Arc<Self>,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
    ) -> bool {
        let staged = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            if inner.disabled.is_some() {
                return false;
            }
            let len = |i: &Inner| i.segment.as_ref().map_or(0, |s| s.len());
            let (seq, before) = (inner.segment_seq, len(inner));
            let n = match self.capture_locked(inner, allow_full, close_generation, mark) {
                Ok(n) => {
                    let bytes = len(inner).saturating_sub(before);
                    self.progress.captured(seq, n, bytes, now_ms());
                    n
                }
                Err(e) => {
                    // Never fail the application's commit: the data is still in the WAL, and
                    // the next capture retries from the recorded position.
                    tracing::error!(db = %self.path.display(), error = %e, "capture failed; will retry at the next commit");
                    self.progress.capture_failed(e.to_string());
                    0
                }
            };
            n > 0 || std::mem::take(&mut inner.marked_closed)
        };
        // Only the capture that sets `dirty` notifies: a staged marker that set it silently
        // would leave every later commit without a notification (replication would stall).
        let notify = staged && !self.dirty.swap(true, Ordering::AcqRel);
        if notify {
            crate::uploader::notify(self, false);
        }
        notify
    }

    fn capture_locked(
        &self,
        inner: &mut Inner,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
    ) -> Result<usize, CaptureError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaptureError::Staging(StagingError::Io { path, source })
        };
        if inner.db_file.is_none() {
            inner.db_file = Some(File::open(&self.path).map_err(io(&self.path))?);
        }
        if inner.capture.closed.is_some() && fingerprint(&self.path) != inner.capture.closed {
            // The next generation continues the closed one only over the very same file.
            inner.capture.require_full(
                "database file changed since its WAL generation ended (replaced, or written by another process)",
            );
        }
        // At a commit whose wal-index mark matches the WAL header the capture read last from
        // our descriptor, that descriptor is the live WAL (salts change at every restart):
        // skip the identity check.
        let known = inner.wal_file.is_some() && inner.capture.known_wal_end(mark).is_some();
        if !known {
            let wal_path = wal_path(&self.path);
            let wal_meta = match std::fs::metadata(&wal_path) {
                Ok(m) if m.is_file() => Some(m),
                Ok(_) => None, // not a WAL SQLite could use (oserror.test makes it a directory)
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(&wal_path)(e)),
            };
            let Some(wal_meta) = wal_meta else {
                if close_generation {
                    self.close_generation(inner)?;
                } else {
                    inner
                        .capture
                        .lost_generation("the WAL was deleted by another process");
                }
                return Ok(0);
            };
            let stale = !matches!(&inner.wal_file, Some((_, dev, ino)) if *dev == wal_meta.dev() && *ino == wal_meta.ino());
            if stale {
                let f = open_noatime(&wal_path).map_err(io(&wal_path))?;
                inner.wal_file = Some((f, wal_meta.dev(), wal_meta.ino()));
                inner.capture.forget_wal_header();
            }
        }
        if inner.segment.is_none() {
            inner.segment = Some(SegmentWriter::open(&self.meta, inner.segment_seq)?);
        }
        let (Some((wal, _, _)), Some(db), Some(seg)) =
            (&inner.wal_file, &inner.db_file, &mut inner.segment)
        else {
            unreachable!("opened above");
        };
        let captured = inner
            .capture
            .capture(wal, db, seg, now_ms(), allow_full, mark)?;
        tracing::debug!(db = %self.path.display(), allow_full, close_generation, txns = captured.txns, pages = captured.pages, full = captured.full, pos = ?inner.capture.pos.map(|p| (p.salt1, p.offset)), ?mark, "capture");
        if let Some(v) = inner.validator.as_mut() {
            use crate::validate::Committed;
            let at_commit = allow_full && inner.capture.need_full.is_none();
            let pos = inner.capture.pos;
            let committed = match mark {
                Some(m) => Some(Committed::Mark(m, pos)),
                None => pos.map(Committed::Pos),
            };
            let committed = committed.filter(|_| at_commit);
            crate::validate::after_capture(v, &self.path, &self.meta, seg, committed, wal, db);
        }
        if close_generation {
            self.close_generation(inner)?;
        }
        Ok(captured.txns)
    }

    /// Records that the current WAL generation ended with everything captured.
    fn close_generation(&self, inner: &mut Inner) -> Result<(), CaptureError> {
        if inner.capture.need_full.is_some() || inner.capture.pos.is_none() {
            return Ok(());
        }
        let Some(f) = fingerprint(&self.path) else {
            return Ok(());
        };
        if inner.capture.closed == Some(f) {
            return Ok(());
        }
        if inner.segment.is_none() {
            inner.segment = Some(SegmentWriter::open(&self.meta, inner.segment_seq)?);
        }
        inner
            .segment
            .as_mut()
            .expect("opened above")
            .write_closed(&f)?;
        inner.capture.closed = Some(f);
        inner.marked_closed = true;
        Ok(())
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
        let mut inner = self.inner.lock();
        if inner.capture.pos.is_some() && inner.capture.need_full.is_none() {
            tracing::warn!(db = %self.path.display(), "database is not in WAL mode; litestream needs journal_mode=WAL");
        }
        inner
            .capture
            .require_full("database was written outside WAL mode");
    }

    /// Asks the next capture to stage a full image (the uploader decided the chain restarts).
    pub(crate) fn require_full(&self, reason: &str) {
        self.inner.lock().capture.require_full(reason);
    }
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;

//! The background uploader: one thread per process, fed over a crossbeam channel.
//!
//! For each database with captured work it seals the closed staging segments into one L0 LTX
//! file per `sync-interval` (the next TXID), then uploads sealed files in TXID order. Staged
//! data is deleted only after the replica acknowledged the file that holds it.

use std::collections::HashMap;
use std::fs;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::database::{Database, Request, StagerWait};
use crate::l0_cache::L0Cache;
use crate::panic_guard::AfterPanic;
use crate::staging::{CommitRecord, StagingError};
use crate::wal::WAL_HEADER_SIZE;
use crate::TxId;

mod adopt;
pub mod bound;
mod l0file;
mod reconcile;
mod remedy;
mod segment_scan;
mod supervise;

/// First retry delay after a failed upload; doubles up to [`MAX_BACKOFF`], with jitter so many
/// databases do not retry in step.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries while the replica is unreachable: short enough that
/// replication resumes within seconds of the store coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How long the exit-time flush waits for uploads before letting the process exit (without a
/// configuration; `shutdown-sync-timeout` otherwise); what is
/// left stays staged and is shipped by the next process that opens the database.
pub const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::database::SyncState;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("{path}: {source}")]
    Ltx {
        path: String,
        source: crate::ltx::LtxError,
    },
    #[error("replica {0}")]
    Replica(#[from] crate::replica::ReplicaError),
    /// The uploader panicked while syncing the database; the sync restarts.
    #[error("internal error: the uploader panicked ({message}); its sync restarts in {retry_in}")]
    Panicked { message: String, retry_in: String },
    /// The uploader panicked again right after its restart: replication of the database
    /// stopped in this process.
    #[error("replication stopped: the uploader panicked again right after restarting ({message})")]
    Stopped { message: String },
}

enum Msg {
    /// Copy the commits `db` recorded lazily into staging now (no seal, no upload).
    Copy(Arc<Database>),
    /// New captured work (or the last handle closed: `urgent`).
    Work { db: Arc<Database>, urgent: bool },
    /// Sync everything now and reply when done or when `deadline` passes.
    Flush {
        reply: Sender<bool>,
        deadline: Instant,
    },
}

struct Handle {
    tx: Sender<Msg>,
    pid: u32,
}

static UPLOADER: OnceLock<Handle> = OnceLock::new();

fn handle() -> Option<&'static Handle> {
    let h = UPLOADER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let spawned = std::thread::Builder::new().name("litestream-uploader".into()).spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the uploader thread; nothing will be replicated");
        }
        crate::stager::set_replicating_process();
        Handle { tx, pid: std::process::id() }
    });
    if h.pid != std::process::id() {
        // A forked child: the parent's thread does not exist here. Staged data stays on disk and
        // is shipped by the next process that opens the database.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| tracing::warn!("replication is not active in a forked child process"));
        return None;
    }
    Some(h)
}

/// Tells the uploader that `db` has work. `urgent`: ignore `sync-interval` (last close).
pub fn notify(db: &Arc<Database>, urgent: bool) {
    if let Some(h) = handle() {
        let _ = h.tx.send(Msg::Work {
            db: Arc::clone(db),
            urgent,
        });
    }
}

/// A database's request (the [`crate::database::Notify`] the registry hands it).
pub fn wake(db: &Arc<Database>, request: Request) {
    match request {
        Request::Sync => notify(db, false),
        Request::SyncNow => notify(db, true),
        Request::Copy => {
            if let Some(h) = handle() {
                let _ = h.tx.send(Msg::Copy(Arc::clone(db)));
            }
        }
    }
}

/// Why [`sync_now`] could not confirm that the replica has everything.
#[derive(Debug, thiserror::Error)]
pub enum SyncNowError {
    #[error("the replica {replica} did not acknowledge {pending} pending transaction(s) within {timeout}: {cause}")]
    Timeout {
        replica: String,
        pending: u64,
        timeout: String,
        cause: String,
    },
    #[error("a committed transaction could not be staged locally ({0}); the replica does not have it yet (staging is retried at the next commit)")]
    Capture(String),
    #[error("replication is not running in this process (a forked child); commits stay staged until a process that replicates opens the database")]
    NotRunning,
}

/// Ships everything captured so far now (ignoring `sync-interval`) and waits until the replica
/// acknowledged it, or `timeout`. Returns the replicated TXID.
pub fn sync_now(db: &Arc<Database>, timeout: Duration) -> Result<TxId, SyncNowError> {
    if !db.claim_stager() {
        // Another process stages the database: it ships this process's commits.
        return match db.wait_for_stager(timeout) {
            StagerWait::Covered(txid) => Ok(txid),
            StagerWait::TimedOut(shared) => Err(SyncNowError::Timeout {
                replica: db.client.describe(),
                pending: shared.as_ref().map_or(0, |s| s.pending_transactions),
                timeout: crate::config::format_go_duration(timeout),
                cause: match shared.and_then(|s| s.last_error) {
                    Some(e) => format!("the process that ships this database reports: {e}"),
                    None => "the process that ships this database has not shipped this process's commits yet".to_string(),
                },
            }),
        };
    }
    if let Some(e) = db.progress.snapshot().capture_error {
        return Err(SyncNowError::Capture(e));
    }
    let target = db.progress.newest();
    if !db.progress.wait_acked(target, Duration::ZERO) {
        if handle().is_none() {
            return Err(SyncNowError::NotRunning);
        }
        notify(db, true);
        if !db.progress.wait_acked(target, timeout) {
            let snap = db.progress.snapshot();
            let cause = match snap.last_error {
                Some(e) => format!("last error: {e}"),
                None => "no upload failed yet; it is still in progress".to_string(),
            };
            return Err(SyncNowError::Timeout {
                replica: db.client.describe(),
                pending: snap.pending_txns,
                timeout: crate::config::format_go_duration(timeout),
                cause,
            });
        }
    }
    Ok(db.progress.snapshot().replicated_txid)
}

/// Syncs every database with work now; true if all of it reached the replicas in time.
pub fn flush(timeout: Duration) -> bool {
    let Some(h) = UPLOADER.get() else { return true };
    if h.pid != std::process::id() {
        return false;
    }
    let (reply, rx) = crossbeam_channel::bounded(1);
    let deadline = Instant::now() + timeout;
    if h.tx.send(Msg::Flush { reply, deadline }).is_err() {
        return false;
    }
    rx.recv_timeout(timeout + Duration::from_millis(100))
        .unwrap_or(false)
}

/// The exit-time flush and lease release (see [`flush_at_exit`]).
fn exit_flush() {
    // A compaction round under way ends first (its temp file would stay in the replica).
    crate::compactor::stop_for_exit(crate::compactor::EXIT_ROUND_WAIT);
    // `shutdown-sync-timeout` from the configuration, as Litestream uses it at shutdown.
    let timeout = crate::config::global()
        .ok()
        .flatten()
        .map_or(EXIT_FLUSH_TIMEOUT, |c| c.shutdown_sync_timeout);
    if !flush(timeout) {
        tracing::warn!(
            "exit: not everything reached the replica; it stays staged for the next run"
        );
    }
    crate::fencing::release_all();
}

/// Runs at `exit` (the extension's shim registers it with `atexit`), where glibc has already
/// run the exiting thread's thread-local destructors: anything touching a thread-local there
/// (the log formatter's buffer, among others) panics. So the work runs on a fresh thread,
/// whose thread-locals are intact, and this one waits. Never panics.
pub fn flush_at_exit() {
    // A panic must not unwind into libc's exit path.
    let _ = std::panic::catch_unwind(|| {
        let worker = std::thread::Builder::new()
            .name("litestream-exit".into())
            .spawn(|| {
                let _ = std::panic::catch_unwind(exit_flush);
            });
        // Without a thread (resource limits), nothing can run safely here: what is pending
        // stays staged for the next run, and the lease expires on its own.
        if let Ok(worker) = worker {
            let _ = worker.join();
        }
    });
}

struct Scheduled {
    db: Arc<Database>,
    due: Instant,
}

/// The uploader thread's state; it survives a panic in a step (see [`supervise`]).
#[derive(Default)]
struct Loop {
    work: HashMap<usize, Scheduled>,
    flushes: Vec<(Sender<bool>, Instant)>,
    supervised: supervise::Supervised,
}

fn run(rx: Receiver<Msg>) {
    let mut lp = Loop::default();
    crate::panic_guard::supervise("litestream-uploader", || lp.step(&rx));
}

impl Loop {
    /// Waits for the next message or due database, then syncs what is due.
    fn step(&mut self, rx: &Receiver<Msg>) -> ControlFlow<()> {
        let next_due = self.work.values().map(|s| s.due).min();
        let msg = match next_due {
            Some(due) => rx.recv_deadline(due),
            None => rx
                .recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Work { db, urgent }) if !self.supervised.is_stopped(&db) => {
                let key = Arc::as_ptr(&db) as usize;
                let interval = db.config.replica.sync_interval;
                let last = db.sync_state.lock().last_sync;
                let due = match (urgent, last) {
                    (true, _) | (_, None) => Instant::now(),
                    (false, Some(t)) => (t + interval).max(Instant::now()),
                };
                let entry = self.work.entry(key).or_insert(Scheduled { db, due });
                entry.due = entry.due.min(due);
            }
            Ok(m) => self.handle_queued(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return ControlFlow::Break(()),
        }
        // Drain what else is queued before doing I/O, so bursts coalesce.
        while let Ok(m) = rx.try_recv() {
            self.handle_queued(m);
        }
        let now = Instant::now();
        let due: Vec<usize> = self
            .work
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let db = Arc::clone(&self.work[&key].db);
            db.dirty.store(false, Ordering::Release);
            let uploads = db.uploads.load(Ordering::Acquire);
            match self.supervised.run(&db, || sync_database(&db)) {
                Ok(Ok(())) => {
                    self.work.remove(&key);
                    if db.uploads.load(Ordering::Acquire) != uploads
                        || crate::fencing::refused(&db.path)
                    {
                        // New input for compaction, or a fence to check again: the compactor
                        // holds only databases with pending work.
                        crate::compactor::watch(&db);
                    }
                    if db.is_stager() && !db.dirty.load(Ordering::Acquire) {
                        hand_over_if_closed(&db);
                        // Idle until the next commit: no descriptor kept but the stager lock
                        // (and the database's own, see `close_idle_files`).
                        db.close_idle_files();
                    }
                    // Work captured while we synced is picked up at the next interval.
                    if db.dirty.load(Ordering::Acquire) {
                        let next = Instant::now() + db.config.replica.sync_interval;
                        self.work.insert(key, Scheduled { db, due: next });
                    }
                }
                Ok(Err(e)) => {
                    let delay = record_failure(&db, &e);
                    bound::enforce(&db);
                    if let Some(s) = self.work.get_mut(&key) {
                        s.due = Instant::now() + delay;
                    }
                }
                Err(AfterPanic::Restart(delay)) => {
                    if let Some(s) = self.work.get_mut(&key) {
                        s.due = Instant::now() + delay;
                    }
                }
                Err(AfterPanic::Stop) => {
                    self.work.remove(&key);
                }
            }
        }
        let now = Instant::now();
        // A database whose replication stopped never reaches the replica from this process.
        let all_done = self.work.is_empty() && !self.supervised.any_stopped();
        self.flushes.retain(|(reply, deadline)| {
            if all_done {
                let _ = reply.send(true);
                false
            } else if now >= *deadline || self.work.is_empty() {
                let _ = reply.send(false);
                false
            } else {
                true
            }
        });
        ControlFlow::Continue(())
    }

    /// A message taken while draining the queue (and every `Copy` or `Flush`).
    fn handle_queued(&mut self, m: Msg) {
        match m {
            Msg::Copy(db) => {
                // A panic while copying is handled like one while syncing.
                if let Err(AfterPanic::Stop) = self.supervised.run(&db, || db.capture_pending()) {
                    self.work.remove(&(Arc::as_ptr(&db) as usize));
                }
            }
            Msg::Work { db, .. } if self.supervised.is_stopped(&db) => {}
            Msg::Work { db, urgent } => {
                let key = Arc::as_ptr(&db) as usize;
                let entry = self.work.entry(key).or_insert(Scheduled {
                    db,
                    due: Instant::now(),
                });
                if urgent {
                    // A checkpoint or a last close: do not wait out a retry backoff.
                    entry.due = Instant::now();
                }
            }
            Msg::Flush { reply, deadline } => {
                for s in self.work.values_mut() {
                    s.due = Instant::now();
                }
                self.flushes.push((reply, deadline));
            }
        }
    }
}

fn record_failure(db: &Database, e: &SyncError) -> Duration {
    let mut st = db.sync_state.lock();
    st.backoff = (st.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
    let jitter = st.backoff.mul_f64(fastrand::f64() * 0.5);
    st.last_error = Some(e.to_string());
    db.progress.sync_failed(e.to_string());
    if db.staging_here() {
        // The other processes see the failure too.
        db.publish_status(None);
    }
    crate::metrics::record_sync_error(&db.path);
    tracing::warn!(db = %db.path.display(), replica = %db.client.describe(), error = %e, hint = e.remedy(db), retry_in_ms = (st.backoff + jitter).as_millis() as u64, "sync failed; will retry");
    st.backoff + jitter
}

/// After everything staged was shipped and no connection of this process has the database
/// open: gives up the writer lease, then the stager lock, so that another process of this
/// machine that still writes the database can take over at once (in that order: a process that
/// takes the stager lock finds the lease free).
fn hand_over_if_closed(db: &Database) {
    if db.open_handles() > 0 {
        return;
    }
    crate::fencing::release_db(&db.path);
    db.release_stager_if_idle();
}

/// Seals closed segments into the next L0 file and uploads every sealed file. Does nothing in
/// a process that does not hold the stager lock (another process stages and ships).
pub fn sync_database(db: &Database) -> Result<(), SyncError> {
    let started = Instant::now();
    if !db.is_stager() {
        return Ok(());
    }
    // Commits recorded lazily at their commit points are copied into staging here, off the
    // application's threads.
    db.capture_pending();
    // Everything captured before this is in the segments rotated below.
    let captured_ns = db.captured_ns();
    let mut st = db.sync_state.lock();
    if db.take_reload_sync_state() {
        // Took over from another process: its position on disk is newer than ours.
        *st = SyncState::new(db.meta.load_state()?.unwrap_or_default());
    }
    if !crate::fencing::gate(db, &st.state)? {
        return Ok(()); // stays staged; the compactor's fence poll calls us back when cleared
    }
    if crate::fencing::took_over(&db.path) {
        // The lease was not ours until now (first sync, or it lapsed while the database was
        // idle): another writer may have moved the replica meanwhile.
        st.reconciled = false;
    }
    if !st.reconciled {
        reconcile::reconcile(db, &mut st)?;
    }
    let segments = db.rotate_segments(st.state.sealed_segment)?;
    if !segments.is_empty() {
        seal(db, &mut st, &segments)?;
    }
    upload_pending(db, &mut st)?;
    // Every sealed file is acknowledged; staged changes being discarded are not in it.
    let covered = (!st.discard_until_full).then_some(captured_ns);
    st.last_sync = Some(Instant::now());
    st.last_error = None;
    st.backoff = Duration::ZERO;
    crate::metrics::record_sync(&db.path, started.elapsed());
    if let Some(was) = db.progress.sync_ok() {
        // At warn, like the failures it ends, so whoever saw those sees this too.
        tracing::warn!(db = %db.path.display(), replica = %db.client.describe(), txid = %crate::format_txid(st.state.replicated_txid), recovered_from = %was, "stream resumed");
    }
    drop(st);
    db.publish_status(covered);
    Ok(())
}

/// Seals the closed `segments` into the next L0 file and, when no older sealed file waits,
/// stores it in the replica at once ("direct"): the file is encoded without an fsync, the
/// replica's own write is the one durable step before it becomes visible, and the state is
/// saved once, after the replica acknowledged it. A crash between the two leaves a replica one
/// file ahead of the state and the segments that file came from still staged: `adopt` finds
/// them at the next start by the commit the file's header names. If the replica refuses the
/// file, it is sealed durably here instead and uploaded later in TXID order, as every file
/// is while older ones wait (and as the first file of a chain is).
fn seal(db: &Database, st: &mut SyncState, segments: &[u64]) -> Result<(), SyncError> {
    let segments = &segments[..segments.len().min(segment_scan::MAX_SEGMENTS_PER_SEAL)];
    let paths: Vec<_> = segments.iter().map(|&s| db.meta.segment_path(s)).collect();
    let segment_scan::Scanned {
        commits,
        closed,
        pages,
        files,
    } = segment_scan::scan(&paths)?;
    let mut last: Option<CommitRecord> = None;
    let mut first_wal_start: Option<u64> = None;
    let mut any_full = false;
    for c in commits {
        if c.full {
            any_full = true;
            first_wal_start = Some(WAL_HEADER_SIZE);
        }
        if first_wal_start.is_none() {
            first_wal_start = Some(match st.state.wal {
                Some(p) if p.salt1 == c.wal.salt1 && p.salt2 == c.wal.salt2 => p.offset,
                _ => WAL_HEADER_SIZE,
            });
        }
        if last.is_some_and(|l| l.wal.salt1 != c.wal.salt1 || l.wal.salt2 != c.wal.salt2) {
            first_wal_start = Some(WAL_HEADER_SIZE);
        }
        last = Some(c);
    }
    let sealed_through = *segments.last().expect("non-empty");
    let discard = st.discard_until_full && !any_full;
    let mut written = None;
    let mut refused = None;
    if let (Some(c), false) = (last, discard) {
        if st.state.txid == 0 && !any_full {
            // Cannot happen by construction (the first capture is full); refuse to write a
            // chain that cannot be restored.
            db.require_full("first replica file must hold every page");
            st.discard_until_full = true;
            tracing::error!(db = %db.path.display(), "staged data lacks a full image; waiting for the next commit");
        } else {
            let txid = st.state.txid + 1;
            // A full image holds every page; otherwise every page the database grew by.
            let complete_from = if any_full { 1 } else { st.state.commit + 1 };
            let encoded = l0file::encode_l0(
                db,
                txid,
                &c,
                first_wal_start.unwrap_or(WAL_HEADER_SIZE),
                complete_from,
                &pages,
                &files,
            );
            match encoded {
                Ok(enc) => {
                    let bytes = enc.bytes;
                    // Not the first file: a replica holding it while the state records no
                    // position at all would look like another database's (the lineage rule).
                    if st.state.txid > 0 && st.state.replicated_txid == st.state.txid {
                        refused = publish_direct(db, st, txid, c.timestamp_ms, enc)?;
                    } else {
                        enc.seal(db)?;
                    }
                    st.discard_until_full = false;
                    written = Some((txid, bytes));
                    st.state.txid = txid;
                    st.state.wal = Some(c.wal);
                    st.state.page_size = c.page_size;
                    st.state.commit = c.db_size;
                }
                Err(SyncError::Ltx { path, source }) if source.is_page_rule() => {
                    // The staged pages cannot make a restorable file (a page the file must
                    // hold is missing): never store it; the chain continues with a full image.
                    tracing::error!(db = %db.path.display(), file = %path, error = %source, "staged changes are incomplete; the next replica file holds every page");
                    db.require_full("staged changes were incomplete");
                    st.discard_until_full = true;
                }
                Err(e) => return Err(e),
            }
            tracing::debug!(db = %db.path.display(), txid = %crate::format_txid(txid), pages = pages.len(), full = any_full, sealed = written.is_some(), "sealed L0 file");
        }
    } else if discard && last.is_some() {
        tracing::info!(db = %db.path.display(), "discarding staged changes until the next full image");
    }
    if closed.is_some() || last.is_some() {
        st.state.closed = closed;
    }
    st.state.sealed_segment = sealed_through;
    db.meta.save_state(&st.state)?;
    db.progress.sealed(
        sealed_through,
        written.map(|w| w.0),
        written.map_or(0, |w| w.1),
    );
    if let Some((txid, _)) = written.filter(|_| st.state.replicated_txid == st.state.txid) {
        db.progress.acked(txid);
    }
    for &seq in segments {
        let _ = fs::remove_file(db.meta.segment_path(seq));
    }
    match refused {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Stores the just-encoded L0 file of `txid` in the replica (see [`seal`]). On success the
/// in-memory state counts it as acknowledged; if the replica refused it, the file is sealed
/// locally and the refusal returned (to be reported once the state is saved).
fn publish_direct(
    db: &Database,
    st: &mut SyncState,
    txid: TxId,
    timestamp_ms: i64,
    enc: l0file::Encoded,
) -> Result<Option<crate::replica::ReplicaError>, SyncError> {
    crate::panic_guard::inject("uploader");
    match db.client.put(0, txid, txid, &enc.tmp, timestamp_ms) {
        Ok(()) => {
            // Fault injection: a crash after the replica has the file, before the state knows.
            crate::panic_guard::inject("published");
            st.state.replicated_txid = txid;
            db.uploads.fetch_add(1, Ordering::Release);
            crate::metrics::record_upload(&db.path, enc.bytes);
            let tmp = enc.tmp.clone();
            drop(enc);
            if db.client.is_local() {
                let _ = fs::remove_file(&tmp);
            } else {
                // The next L1 merge reads it from here instead of downloading it.
                L0Cache::new(&db.meta).keep(&tmp, txid, txid);
            }
            tracing::debug!(db = %db.path.display(), replica = %db.client.describe(), txid = %crate::format_txid(txid), "sync complete");
            Ok(None)
        }
        Err(e) => {
            enc.seal(db)?;
            Ok(Some(e))
        }
    }
}

/// Uploads sealed files in TXID order; each acknowledged one is recorded, then deleted locally.
fn upload_pending(db: &Database, st: &mut SyncState) -> Result<(), SyncError> {
    for (min, max) in db.meta.list_l0()? {
        if max <= st.state.replicated_txid {
            let _ = fs::remove_file(db.meta.l0_path(min, max));
            continue;
        }
        let path = db.meta.l0_path(min, max);
        let ts = l0file::read_timestamp(&path)?;
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        crate::panic_guard::inject("uploader");
        db.client.put(0, min, max, &path, ts)?;
        // Recorded in memory only: the next seal's (fsynced) state save persists it, and after
        // a crash `reconcile` finds it on the replica (a TXID we sealed), so no extra fsync.
        st.state.replicated_txid = max;
        db.progress.acked(max);
        db.uploads.fetch_add(1, Ordering::Release);
        crate::metrics::record_upload(&db.path, size);
        if db.client.is_local() {
            let _ = fs::remove_file(&path);
        } else {
            // The next L1 merge reads it from here instead of downloading it.
            L0Cache::new(&db.meta).keep(&path, min, max);
        }
        tracing::debug!(db = %db.path.display(), replica = %db.client.describe(), txid = %crate::format_txid(max), bytes = size, "sync complete");
    }
    Ok(())
}

//! Several processes on one database (`docs/staging.md`, "Several processes"): the stager's
//! end (it listens for other processes' commits and publishes the replication status) and the
//! other processes' end (a commit wakes the stager; status and waits read what it published).

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::*;
use crate::shared_status::{now_ns, SharedStatus};
use crate::wake::{Listener, Wake};
use crate::TxId;

/// How often a process that does not stage, waiting for the replica (`PRAGMA
/// litestream.checkpoint`), reads the status the stager publishes after each sync. Only while
/// such a wait lasts; 20 ms adds little to an upload's round trip and costs one small read.
pub const STAGER_STATUS_POLL: Duration = Duration::from_millis(20);

/// Reads of SQLite's wal-index header that may find its two copies different (SQLite was
/// writing it) before the wake falls back to scanning the WAL without a mark. SQLite's own
/// lock-free readers retry the same way; a header update takes nanoseconds.
const SHM_READ_TRIES: u32 = 3;

/// Bytes of the `-shm` file read: the wal-index header's two 48-byte copies.
const SHM_HEADER_BYTES: usize = 96;

/// SQLite's committed mark, read from the `-shm` file without any lock: valid when the
/// header's two copies are equal (SQLite writes the second copy, then the first).
fn read_shm_mark(db_path: &Path, shm: &mut Option<File>) -> Option<WalIndexMark> {
    if shm.is_none() {
        let mut p = db_path.as_os_str().to_owned();
        p.push("-shm");
        *shm = File::open(PathBuf::from(p)).ok();
    }
    let file = shm.as_ref()?;
    for _ in 0..SHM_READ_TRIES {
        let mut buf = [0u8; SHM_HEADER_BYTES];
        if file.read_exact_at(&mut buf, 0).is_err() {
            // Shorter than a header: SQLite has not initialised it (yet). Reopened next time.
            *shm = None;
            return None;
        }
        let (a, b) = buf.split_at(SHM_HEADER_BYTES / 2);
        if a == b {
            return WalIndexMark::parse(a.try_into().expect("48 bytes"));
        }
    }
    None
}

/// What a process that does not stage knows of the replication ([`Database::peer_status`]).
#[derive(Debug)]
pub struct PeerStatus {
    /// What the stager published last (`None` before it published anything).
    pub shared: Option<SharedStatus>,
    /// This process's commits it does not cover yet: the oldest one's commit time (ms since
    /// the epoch) and how many.
    pub own: Option<(i64, u64)>,
}

/// Result of [`Database::wait_for_stager`].
#[derive(Debug)]
pub enum StagerWait {
    /// The replica holds this process's commits: its TXID then.
    Covered(TxId),
    /// Not within the timeout: the last status the stager published, if any.
    TimedOut(Option<SharedStatus>),
}

impl Database {
    /// True while this process stages the database (no lock taken; see [`Database::is_stager`]).
    pub fn staging_here(&self) -> bool {
        self.staging_here.load(Ordering::Acquire)
    }

    /// Records a commit's `mark` lazily when possible, noting `seen_ns` (a time before the mark
    /// was read) with it under the same lock, so that the copy knows which commits it covers.
    pub(super) fn record(
        &self,
        mark: Option<WalIndexMark>,
        now: i64,
        seen_ns: i64,
    ) -> CommitAction {
        let mut pending = self.pending.lock();
        let action = pending.on_commit(mark, now);
        if matches!(action, CommitAction::Recorded { .. }) {
            self.recorded_ns.fetch_max(seen_ns, Ordering::AcqRel);
        }
        action
    }

    /// The newest recorded mark, its commit time, and the time noted with it.
    pub(super) fn recorded_with_ns(&self) -> Option<(WalIndexMark, i64, i64)> {
        let pending = self.pending.lock();
        let ns = self.recorded_ns.load(Ordering::Acquire);
        pending.recorded().map(|(m, at_ms)| (m, at_ms, ns))
    }

    /// Became the stager: listens for the other processes' commits.
    pub(super) fn listen_for_wakes(&self, inner: &mut Inner) {
        self.staging_here.store(true, Ordering::Release);
        if inner.wake.is_some() {
            return;
        }
        let me = self.me.clone();
        let mut shm = None;
        let started = Listener::start(&self.meta, move |wake| {
            if let Some(db) = me.upgrade() {
                db.on_wake(wake, &mut shm);
            }
        });
        match started {
            Ok(l) => inner.wake = Some(l),
            Err(e) => {
                tracing::warn!(db = %self.path.display(), error = %e, "cannot listen for other processes' commits; they are shipped after this process's next commit");
            }
        }
    }

    /// No longer the stager: stops listening.
    pub(super) fn stop_listening(&self, inner: &mut Inner) {
        self.staging_here.store(false, Ordering::Release);
        inner.wake = None;
    }

    /// The stager was woken by another process's commit: records SQLite's mark as at its own
    /// commit (lazily, the uploader copies it) or captures up to it here (never a full image:
    /// that waits for a commit point of this process), and asks for a sync.
    fn on_wake(self: &Arc<Self>, wake: Wake, shm: &mut Option<File>) {
        if !self.staging_here() {
            return;
        }
        let seen = now_ns();
        let mark = read_shm_mark(&self.path, shm);
        let now = now_ms();
        match mark.map(|m| self.record(Some(m), now, seen)) {
            Some(CommitAction::Recorded { copy }) => {
                self.progress.committed(now);
                if !self.dirty.swap(true, Ordering::AcqRel) {
                    self.request_sync(false);
                }
                if copy {
                    (self.notify)(self, Request::Copy);
                }
            }
            _ => {
                self.capture_now_seen(false, false, mark, seen);
            }
        }
        // Also when nothing new was staged: the published status then covers the commit.
        self.request_sync(wake == Wake::FlushNow);
    }

    /// A commit of this process, which does not stage: notes it and wakes the stager.
    pub(super) fn committed_elsewhere(&self, seen_ns: i64, now: i64) {
        self.own.lock().committed(seen_ns, now);
        self.waker.send(&self.meta, Wake::Committed);
    }

    /// The stager, after a sync: publishes the replication status for the other processes.
    /// `covered_ns`: every commit before it is now in the replica (`None`: unchanged).
    pub(crate) fn publish_status(&self, covered_ns: Option<i64>) {
        if let Some(c) = covered_ns {
            self.covered_ns.fetch_max(c, Ordering::AcqRel);
        }
        let snap = self.progress.snapshot();
        let ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let status = SharedStatus {
            pid: std::process::id(),
            covered_ns: self.covered_ns.load(Ordering::Acquire),
            txid: snap.txid,
            replicated_txid: snap.replicated_txid,
            pending_transactions: snap.pending_txns,
            pending_bytes: snap.pending_bytes,
            oldest_pending_ms: snap.oldest_pending_ms,
            last_sync_ms: snap.last_sync.map(ms),
            last_error: snap.last_error.or(snap.capture_error),
        };
        let mut last = self.published.lock();
        if last.as_ref() == Some(&status) {
            return;
        }
        match status.publish(&self.meta) {
            Ok(()) => *last = Some(status),
            Err(e) => {
                tracing::warn!(db = %self.path.display(), error = %e, "cannot publish the replication status for other processes")
            }
        }
    }

    /// Every commit captured before this time is staged (the stager's uploader reads it before
    /// it rotates the segments it seals).
    pub(crate) fn captured_ns(&self) -> i64 {
        self.captured_ns.load(Ordering::Acquire)
    }

    /// In a process that does not stage: the status the stager published, with this process's
    /// own commits it does not cover yet (oldest commit time, count). `None` in the stager.
    pub(crate) fn peer_status(&self) -> Option<PeerStatus> {
        if self.staging_here() {
            return None;
        }
        let shared = match SharedStatus::read(&self.meta) {
            Ok(s) => s,
            Err(e) => Some(SharedStatus {
                last_error: Some(format!("cannot read the stager's status: {e}")),
                ..Default::default()
            }),
        };
        let mut own = self.own.lock();
        if let Some(s) = &shared {
            own.confirm(s);
        }
        Some(PeerStatus {
            shared,
            own: own.unconfirmed(),
        })
    }

    /// In a process that does not stage: takes the stager lock if it is free (and then captures
    /// what the WAL holds, as at a WAL reset). True when this process stages now.
    pub(crate) fn claim_stager(self: &Arc<Self>) -> bool {
        if !self.staging_here() && !forked_child() {
            self.capture_now(false, false, None);
        }
        self.staging_here()
    }

    /// In a process that does not stage: asks the stager to ship now and waits until the
    /// status it publishes covers this process's newest commit, or `timeout`.
    pub(crate) fn wait_for_stager(&self, timeout: Duration) -> StagerWait {
        let deadline = Instant::now() + timeout;
        let target = self.own.lock().newest_ns();
        let mut asked = false;
        loop {
            let shared = SharedStatus::read(&self.meta).ok().flatten();
            if target == 0 {
                // Nothing committed here: nothing to wait for.
                return StagerWait::Covered(shared.map_or(0, |s| s.replicated_txid));
            }
            if let Some(s) = shared.as_ref().filter(|s| s.covers(target)) {
                self.own.lock().confirm(s);
                return StagerWait::Covered(s.replicated_txid);
            }
            if !asked {
                asked = true;
                self.waker.send(&self.meta, Wake::FlushNow);
            }
            let now = Instant::now();
            if now >= deadline {
                return StagerWait::TimedOut(shared);
            }
            std::thread::sleep(STAGER_STATUS_POLL.min(deadline - now));
        }
    }
}

//! One read replica: the local file, the replica it follows, and the poll that keeps it current.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::apply_batch::{self, ApplyContext, DbFile, Outcome};
use super::batch::{self, Batch};
use super::lock::LockPolicy;
pub use super::replica_status::{from_ms, to_ms, FollowerStatus};
use super::state::{FollowerState, MetaFiles, StatusRecord};
use super::sys::{self, VfsFile};
use super::FollowError;
use crate::panic_guard::{AfterPanic, Supervision};
use crate::replica::{LtxFileInfo, ReplicaClient};
use crate::restore::{self, RestoreOptions, RestoreOutcome, Target};
use crate::{format_txid, TxId};

/// Files applied in one transaction at most: bounds the journal and the time readers wait
/// when a replica catches up on a long backlog (each transaction still ends on a TXID).
const MAX_FILES_PER_APPLY: usize = 256;
/// Consecutive idle polls (the replica had nothing new) before polling slows down.
const IDLE_POLLS_BEFORE_BACKOFF: u32 = 30;
/// While the primary stays idle, polls slow down to at most this multiple of the poll
/// interval: an idle replica costs few requests, and staleness after the first new write stays
/// within a few poll intervals.
const MAX_IDLE_FACTOR: u32 = 4;
/// Longest pause between polls while the replica store keeps failing.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// Why and how a follower is set up.
#[derive(Clone)]
pub struct FollowerConfig {
    pub name: Option<String>,
    /// The local replica database.
    pub path: PathBuf,
    pub client: Arc<dyn ReplicaClient>,
    pub poll_interval: Duration,
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Nothing new: the local file holds the newest TXID of the replica.
    Current { txid: TxId },
    /// Batches were applied; `current` says whether the newest TXID was reached.
    Applied { from: TxId, to: TxId, current: bool },
    /// The local file was replaced page by page with the replica's newest state.
    Rebased { txid: TxId, reason: String },
    /// Readers or another writer held the file; retry soon.
    Deferred(&'static str),
}

/// `<path><suffix>`.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub struct Follower {
    pub name: Option<String>,
    pub path: PathBuf,
    pub client: Arc<dyn ReplicaClient>,
    pub poll_interval: Duration,
    pub(crate) replica_url: String,
    pub(crate) meta: MetaFiles,
    journal_path: PathBuf,
    pub(crate) policy: LockPolicy,
    /// The file through the default VFS; the mutex also serialises polls in this process.
    file: Mutex<Option<VfsFile>>,
    status: Mutex<FollowerStatus>,
    /// Held off by readers since (for the escalation of the drain window).
    deferred_since: Mutex<Option<Instant>>,
    wake: (std::sync::Mutex<bool>, Condvar),
    started: AtomicBool,
}

impl Follower {
    /// Prepares the local file: restores it when missing (or empty), rolls back an interrupted
    /// apply, and reads which TXID it holds. Does not start polling ([`Follower::start`]).
    pub fn open(cfg: FollowerConfig) -> Result<Arc<Follower>, FollowError> {
        let path =
            std::path::absolute(&cfg.path).map_err(FollowError::io(&cfg.path, "resolve path"))?;
        let meta = MetaFiles::for_db(&path);
        if meta.primary_state_path().exists() {
            return Err(FollowError::Config(format!(
                "{} was promoted to a primary ({} exists); open it as a database, not as a \
                 read replica",
                path.display(),
                meta.primary_state_path().display()
            )));
        }
        meta.create()?;
        let journal_path = sidecar(
            &sys::full_pathname(&path).map_err(FollowError::io(&path, "resolve path"))?,
            "-journal",
        );
        let f = Follower {
            name: cfg.name,
            replica_url: cfg.client.describe(),
            client: cfg.client,
            poll_interval: cfg.poll_interval,
            meta,
            journal_path,
            policy: LockPolicy::default(),
            file: Mutex::new(None),
            status: Mutex::new(FollowerStatus::default()),
            deferred_since: Mutex::new(None),
            wake: (std::sync::Mutex::new(false), Condvar::new()),
            started: AtomicBool::new(false),
            path,
        };
        {
            let mut st = f.status.lock();
            st.name = f.name.clone();
            st.path = f.path.clone();
            st.replica = f.replica_url.clone();
            if let Ok(Some(rec)) = f.meta.load_status() {
                st.primary_txid = rec.primary_txid;
                st.last_current = rec.last_current_ms.map(from_ms);
            }
        }
        let f = Arc::new(f);
        f.prepare_local()?;
        Ok(f)
    }

    fn prepare_local(&self) -> Result<(), FollowError> {
        let missing = match fs::metadata(&self.path) {
            Ok(m) => m.len() == 0,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(FollowError::io(&self.path, "stat")(e)),
        };
        if missing {
            return self.restore_fresh();
        }
        if self.meta.load()?.is_none() {
            return Err(FollowError::Config(format!(
                "{} exists but was not made by a read replica ({} is missing); move it away to \
                 restore the replica there",
                self.path.display(),
                self.meta.state_path().display()
            )));
        }
        let mut guard = self.file.lock();
        let file = self.file_locked(&mut guard)?;
        apply_batch::recover(file, &self.journal_path, &self.policy)?;
        let txid = apply_batch::current_txid(file, &self.meta, &self.replica_url, &self.policy)?;
        self.status.lock().txid = txid.unwrap_or(0);
        tracing::info!(path = %self.path.display(), replica = %self.replica_url, txid = %format_txid(txid.unwrap_or(0)), "read replica resumes from its recorded TXID");
        Ok(())
    }

    fn file_locked<'a>(
        &self,
        guard: &'a mut Option<VfsFile>,
    ) -> Result<&'a mut dyn DbFile, FollowError> {
        if guard.is_none() {
            *guard = Some(sys::open(&self.path).map_err(FollowError::io(&self.path, "open"))?);
        }
        Ok(guard.as_mut().expect("opened above").as_mut())
    }

    /// Restores the newest state into a missing (or empty) local file: into a temp file,
    /// switched to rollback-journal mode, recorded, then moved into place. Serialised between
    /// processes with a lock file, so one process restores and the others resume from it.
    fn restore_fresh(&self) -> Result<(), FollowError> {
        let lock_path = self.meta.lock_path();
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(FollowError::io(&lock_path, "open lock file"))?;
        sys::flock_exclusive(&lock).map_err(FollowError::io(&lock_path, "lock"))?;
        if fs::metadata(&self.path).is_ok_and(|m| m.len() > 0) && self.meta.load()?.is_some() {
            drop(lock);
            return self.prepare_local();
        }
        let dir = self.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.restore-{:016x}", fastrand::u64(..)));
        let started = Instant::now();
        let res = (|| {
            let mut opts = RestoreOptions::new(&tmp);
            opts.target = Target::Latest;
            let RestoreOutcome::Restored {
                txid, page_count, ..
            } = restore::restore(self.client.as_ref(), &opts)?
            else {
                return Err(FollowError::Internal("restore returned no database"));
            };
            let counter = apply_batch::patch_page1_file(&tmp, page_count)?;
            self.meta.save(&FollowerState {
                replica: self.replica_url.clone(),
                txid,
                counter,
                pending: None,
            })?;
            // A journal or WAL left beside a deleted file would be applied to the new one.
            for suffix in ["-journal", "-wal", "-shm"] {
                let p = sidecar(&self.path, suffix);
                if let Err(e) = fs::remove_file(&p) {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(FollowError::io(&p, "remove stale file")(e));
                    }
                }
            }
            fs::rename(&tmp, &self.path).map_err(FollowError::io(&self.path, "move into place"))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(FollowError::io(&dir, "fsync directory"))?;
            Ok(txid)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let txid = res?;
        let mut st = self.status.lock();
        st.txid = txid;
        st.primary_txid = st.primary_txid.max(txid);
        // The restore reached the newest TXID the replica had.
        st.last_current = Some(SystemTime::now());
        tracing::info!(path = %self.path.display(), replica = %self.replica_url, txid = %format_txid(txid), elapsed_ms = started.elapsed().as_millis() as u64, "read replica restored");
        Ok(())
    }

    /// The current status.
    pub fn status(&self) -> FollowerStatus {
        let mut s = self.status.lock().clone();
        s.following = self.started.load(Ordering::Acquire);
        s
    }

    /// Starts the background poller (once).
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("litestream-follower".into())
            .spawn(move || me.run());
        if let Err(e) = spawned {
            self.started.store(false, Ordering::Release);
            tracing::error!(path = %self.path.display(), error = %e, "cannot start the read replica poller");
        }
    }

    fn sleep(&self, d: Duration) {
        let (m, cv) = &self.wake;
        let Ok(mut w) = m.lock() else { return };
        let deadline = Instant::now() + d;
        while !*w {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match cv.wait_timeout(w, deadline - now) {
                Ok((g, _)) => w = g,
                Err(_) => return,
            }
        }
        *w = false;
    }

    fn run(self: Arc<Self>) {
        let (mut idle, mut errors, mut deferrals) = (0u32, 0u32, 0u32);
        let mut last_logged: Option<String> = None;
        let mut supervision = Supervision::default();
        loop {
            let polled = self.poll();
            if !matches!(polled, Err(FollowError::Panicked(_))) {
                supervision.finished();
            } else if supervision.panicked() == AfterPanic::Stop {
                // Panicked again right after the previous poll did (logged there): stop.
                let err =
                    FollowError::Stopped(polled.err().map(|e| e.to_string()).unwrap_or_default());
                tracing::error!(path = %self.path.display(), replica = %self.replica_url, error = %err, "read replica poller stopped (please report)");
                self.status.lock().last_error = Some(err.to_string());
                self.started.store(false, Ordering::Release);
                return;
            }
            let delay = match polled {
                Ok(PollOutcome::Current { .. }) => {
                    (errors, deferrals) = (0, 0);
                    idle = idle.saturating_add(1);
                    idle_delay(self.poll_interval, idle)
                }
                Ok(PollOutcome::Applied { current, .. }) => {
                    (idle, errors, deferrals) = (0, 0, 0);
                    if current {
                        self.poll_interval
                    } else {
                        Duration::ZERO
                    }
                }
                Ok(PollOutcome::Rebased { .. }) => {
                    (idle, errors, deferrals) = (0, 0, 0);
                    Duration::ZERO
                }
                Ok(PollOutcome::Deferred(_)) => {
                    deferrals = deferrals.saturating_add(1);
                    self.policy.retry_delay(deferrals)
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    let msg = e.to_string();
                    if last_logged.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(path = %self.path.display(), replica = %self.replica_url, error = %msg, "read replica poll failed; will retry");
                        last_logged = Some(msg);
                    }
                    error_delay(self.poll_interval, errors)
                }
            };
            if errors == 0 {
                last_logged = None;
            }
            self.sleep(delay);
        }
    }

    /// Polls until the local file holds the replica's newest TXID (waiting for readers as
    /// needed), or `timeout` passes. Returns the TXID reached.
    pub fn sync(&self, timeout: Duration) -> Result<TxId, FollowError> {
        let deadline = Instant::now() + timeout;
        let mut deferrals = 0;
        loop {
            match self.poll()? {
                // Reaching the newest TXID listed is enough: with a busy primary, waiting for
                // a poll that finds nothing new could take forever.
                PollOutcome::Current { txid }
                | PollOutcome::Applied {
                    to: txid,
                    current: true,
                    ..
                }
                | PollOutcome::Rebased { txid, .. } => return Ok(txid),
                PollOutcome::Deferred(reason) => {
                    if Instant::now() >= deadline {
                        return Err(FollowError::Config(format!(
                            "{}: not current after {}s: {reason}",
                            self.path.display(),
                            timeout.as_secs()
                        )));
                    }
                    deferrals += 1;
                    std::thread::sleep(self.policy.retry_delay(deferrals));
                }
                _ => {}
            }
        }
    }

    /// One poll: list, fetch what is new, apply it.
    pub fn poll(&self) -> Result<PollOutcome, FollowError> {
        let mut guard = self.file.lock();
        // A panic is an error of this poll (logged, shown in the status, retried with backoff).
        let res = crate::panic_guard::catch(|| self.poll_locked(&mut guard))
            .unwrap_or_else(|p| Err(FollowError::Panicked(p.0)));
        let now = SystemTime::now();
        let record = {
            let mut st = self.status.lock();
            st.last_poll = Some(now);
            match &res {
                Ok(o) => {
                    st.last_error = None;
                    if let PollOutcome::Deferred(_) = o {
                        let since = *self.deferred_since.lock().get_or_insert_with(Instant::now);
                        st.deferred_since = Some(now - since.elapsed());
                    } else {
                        *self.deferred_since.lock() = None;
                        st.deferred_since = None;
                    }
                    match o {
                        PollOutcome::Current { txid }
                        | PollOutcome::Applied {
                            to: txid,
                            current: true,
                            ..
                        }
                        | PollOutcome::Rebased { txid, .. } => {
                            st.txid = *txid;
                            st.primary_txid = st.primary_txid.max(*txid);
                            st.last_current = Some(now);
                        }
                        PollOutcome::Applied { to, .. } => st.txid = *to,
                        PollOutcome::Deferred(_) => {}
                    }
                }
                Err(e) => st.last_error = Some(e.to_string()),
            }
            StatusRecord {
                txid: st.txid,
                primary_txid: st.primary_txid,
                last_poll_ms: st.last_poll.map(to_ms),
                last_current_ms: st.last_current.map(to_ms),
                last_error: st.last_error.clone(),
            }
        };
        if let Err(e) = self.meta.save_status(&record) {
            tracing::debug!(error = %e, "cannot write the read replica status file");
        }
        res
    }

    fn poll_locked(&self, guard: &mut Option<VfsFile>) -> Result<PollOutcome, FollowError> {
        if self.meta.primary_state_path().exists() {
            return Err(FollowError::Config(format!(
                "{} was promoted to a primary; following stopped",
                self.path.display()
            )));
        }
        let file = self.file_locked(guard)?;
        let Some(cur) =
            apply_batch::current_txid(file, &self.meta, &self.replica_url, &self.policy)?
        else {
            return self.rebase(file, "the local file's state is unknown");
        };
        // The cheap path: one LIST of L0, which holds the newest file of a live replica.
        let l0 = self.client.list(0)?;
        let l0_max = l0.iter().map(|f| f.max_txid).max().unwrap_or(0);
        self.see_primary(l0_max);
        if l0_max == cur {
            return Ok(PollOutcome::Current { txid: cur });
        }
        if l0_max > cur {
            let chain = restore::plan_continuation(&l0, cur);
            if chain.last().map(|f| f.max_txid) == Some(l0_max) {
                return self.apply_chain(file, cur, &chain, l0_max);
            }
        }
        // L0 cannot continue (its older files were compacted away, or it is empty): every
        // level bridges the gap.
        let all = self.client.list_all()?;
        let max = all.iter().map(|f| f.max_txid).max().unwrap_or(0);
        self.see_primary(max);
        if max == 0 {
            return Err(FollowError::Config(format!(
                "replica {} is empty; keeping the local copy at TXID {}",
                self.replica_url,
                format_txid(cur)
            )));
        }
        if max == cur {
            return Ok(PollOutcome::Current { txid: cur });
        }
        if max < cur {
            return self.rebase(
                file,
                &format!(
                    "the replica went back from TXID {} to {} (the primary started a new chain)",
                    format_txid(cur),
                    format_txid(max)
                ),
            );
        }
        let chain = restore::plan_continuation(&all, cur);
        if chain.last().map(|f| f.max_txid) == Some(max) {
            return self.apply_chain(file, cur, &chain, max);
        }
        self.rebase(
            file,
            &format!(
                "no chain of files continues TXID {} (the files it needs were removed)",
                format_txid(cur)
            ),
        )
    }

    fn see_primary(&self, txid: TxId) {
        let mut st = self.status.lock();
        st.primary_txid = st.primary_txid.max(txid);
    }

    fn ctx(&self) -> ApplyContext<'_> {
        let deferred_for = self
            .deferred_since
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        ApplyContext {
            journal_path: &self.journal_path,
            meta: &self.meta,
            replica: &self.replica_url,
            policy: &self.policy,
            deferred_for,
        }
    }

    fn fetch(&self, files: &[LtxFileInfo]) -> Result<Batch, FollowError> {
        batch::fetch(self.client.as_ref(), files, &self.meta.dir)
    }

    fn apply_chain(
        &self,
        file: &mut dyn DbFile,
        cur: TxId,
        chain: &[LtxFileInfo],
        newest: TxId,
    ) -> Result<PollOutcome, FollowError> {
        let mut at = cur;
        for chunk in chain.chunks(MAX_FILES_PER_APPLY) {
            let b = self.fetch(chunk)?;
            match apply_batch::apply(file, &self.ctx(), &b) {
                Ok(Outcome::Applied { txid, pages }) => {
                    tracing::debug!(path = %self.path.display(), from = %format_txid(at), to = %format_txid(txid), files = b.files, pages, "read replica applied");
                    at = txid;
                }
                Ok(Outcome::AlreadyAt(t)) => at = at.max(t),
                Ok(Outcome::Deferred(reason)) if at == cur => {
                    return Ok(PollOutcome::Deferred(reason))
                }
                // Progress was made; the rest waits for the next poll.
                Ok(Outcome::Deferred(_)) | Ok(Outcome::Replan { .. }) => break,
                Ok(Outcome::Unknown(reason)) => return self.rebase(file, &reason),
                Err(FollowError::MissingPage { .. }) => {
                    return self.rebase(file, "a page is missing from the chain")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(PollOutcome::Applied {
            from: cur,
            to: at,
            current: at >= newest,
        })
    }

    /// Brings the local file to the replica's newest state from a full plan (snapshot plus
    /// chain), in place, as one transaction; unchanged pages are not rewritten.
    fn rebase(&self, file: &mut dyn DbFile, reason: &str) -> Result<PollOutcome, FollowError> {
        let planned = restore::plan_replica(self.client.as_ref(), &Target::Latest)?;
        let newest = planned.last().map(|f| f.max_txid).unwrap_or(0);
        self.see_primary(newest);
        tracing::warn!(path = %self.path.display(), replica = %self.replica_url, reason, txid = %format_txid(newest), "read replica re-bases on the newest snapshot");
        let b = self.fetch(&planned)?;
        match apply_batch::apply(file, &self.ctx(), &b)? {
            Outcome::Applied { txid, .. } | Outcome::AlreadyAt(txid) => Ok(PollOutcome::Rebased {
                txid,
                reason: reason.to_string(),
            }),
            Outcome::Deferred(r) => Ok(PollOutcome::Deferred(r)),
            Outcome::Replan { .. } | Outcome::Unknown(_) => {
                Err(FollowError::Internal("a full batch was refused"))
            }
        }
    }
}

/// The pause after `idle` consecutive polls that found nothing new.
pub fn idle_delay(poll: Duration, idle: u32) -> Duration {
    if idle < IDLE_POLLS_BEFORE_BACKOFF {
        return poll;
    }
    let steps = (idle - IDLE_POLLS_BEFORE_BACKOFF) / IDLE_POLLS_BEFORE_BACKOFF + 1;
    poll * (1u32 << steps.min(8)).min(MAX_IDLE_FACTOR)
}

/// The pause after `errors` consecutive failed polls.
pub fn error_delay(poll: Duration, errors: u32) -> Duration {
    (poll * (1u32 << errors.saturating_sub(1).min(16))).min(MAX_ERROR_BACKOFF.max(poll))
}

#[cfg(test)]
mod tests;

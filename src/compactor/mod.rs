//! Compaction levels, L9 snapshots and retention (spec §1.5, §2; design: `docs/compaction.md`).
//!
//! One background thread per process (`litestream-compactor`) keeps a schedule per replicated
//! database, and one timer heap holding only the databases with pending work ([`timers`]):
//! level N (1..=8) merges level N-1 at wall-clock multiples of its interval, L9
//! snapshots are written every `snapshot.interval`, and retention runs as Litestream's does.
//! Everything is read from and written to the replica through
//! [`crate::replica::ReplicaClient`]: the jobs never read the live database and never take a
//! SQLite lock, so the application's connections are never stalled, whatever the database
//! size. A due job with nothing new to read since it last succeeded is skipped
//! ([`activity`]), so an idle database makes no requests. Before a round that has work the
//! thread checks the writer fence ([`crate::fencing`]), which renews the lease when needed.

mod activity;
mod fenced;
mod jobs;
mod merge;
mod retention;
mod schedule;
mod timers;

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use thiserror::Error;

pub use jobs::{compact_level, enforce_snapshot_retention, l0_retention_pass, snapshot};
pub use schedule::{previous_boundary, Schedule, Settings};

use crate::database::Database;
use crate::l0_cache::L0Cache;
use crate::panic_guard::AfterPanic;
use crate::replica::ReplicaError;
use timers::Timers;

#[derive(Debug, Error)]
pub enum CompactError {
    #[error("replica {0}")]
    Replica(#[from] ReplicaError),
    #[error("{key}: {source}")]
    Ltx {
        key: String,
        source: crate::ltx::LtxError,
    },
    #[error("{key}: download: {source}")]
    Download { key: String, source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot merge: {0}")]
    Chain(String),
    #[error("cannot plan a snapshot: {0}")]
    Plan(#[from] crate::restore::PlanError),
    /// A compaction round panicked; its jobs run again at their next boundary.
    #[error("internal error: the compactor panicked ({message}); its jobs run again at their next interval")]
    Panicked { message: String },
    /// A compaction round panicked again right after the previous one did: compaction,
    /// snapshots and retention of the database stopped in this process (uploads go on).
    #[error("compaction stopped: the compactor panicked again right after restarting ({message}); uploads continue, the replica keeps growing until the database is reopened")]
    Stopped { message: String },
}

impl CompactError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> CompactError {
        let path = path.to_path_buf();
        move |source| CompactError::Io { path, source }
    }
}

/// Longest sleep of the thread between checks while some database has a timer: bounds the
/// effect of a wall-clock jump, and is the cadence at which a database refused by the writer
/// fence is checked again (a local check only, unless it was refused). With every database
/// parked the thread sleeps until a database wakes.
const MAX_SLEEP: Duration = Duration::from_secs(10);

struct Handle {
    tx: Sender<Arc<Database>>,
    pid: u32,
}

static COMPACTOR: OnceLock<Handle> = OnceLock::new();

/// Held by the compactor thread for each round of jobs; `true` once the process exits. A round
/// cut off by the end of the process would leave its temp file in the replica (harmless to
/// readers, which skip such names, but litter), so [`stop_for_exit`] waits for it.
static ROUND: parking_lot::Mutex<bool> = parking_lot::Mutex::new(false);

/// How long the exit waits for a compaction round under way: a merge of the few L0 files a
/// round takes finishes well within it on a local or nearby store; a longer one is cut off.
pub const EXIT_ROUND_WAIT: Duration = Duration::from_secs(2);

/// At process exit: waits (at most `wait`) for the compaction round under way, then lets no
/// other round start.
pub fn stop_for_exit(wait: Duration) {
    if let Some(mut exiting) = ROUND.try_lock_for(wait) {
        *exiting = true;
    }
}

/// Tells the compactor that `db` may have work: starts scheduling compaction, snapshots and
/// retention for a new database, or wakes a parked one (the uploader calls it after it stored
/// an L0 file). Cheap and idempotent.
pub fn watch(db: &Arc<Database>) {
    let h = COMPACTOR.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let spawned = std::thread::Builder::new()
            .name("litestream-compactor".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the compactor thread; replicas will hold L0 files only");
        }
        Handle {
            tx,
            pid: std::process::id(),
        }
    });
    if h.pid == std::process::id() {
        let _ = h.tx.send(Arc::clone(db));
    }
}

/// The effective settings: the configuration file's, else Litestream's defaults.
fn settings() -> Settings {
    match crate::config::global() {
        Ok(Some(c)) => Settings::from_config(c),
        _ => Settings::default(),
    }
}

fn run(rx: Receiver<Arc<Database>>) {
    let settings = settings();
    let mut timers = Timers::default();
    crate::panic_guard::supervise("litestream-compactor", || step(&rx, &settings, &mut timers));
}

/// Waits for a database to wake or the next timer, then runs the rounds that are due.
fn step(rx: &Receiver<Arc<Database>>, settings: &Settings, timers: &mut Timers) -> ControlFlow<()> {
    let msg = match timers.next_wake() {
        Some(due) => {
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            rx.recv_timeout(wait)
        }
        None => rx
            .recv()
            .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
    };
    match msg {
        Ok(db) => timers.wake(db, settings, SystemTime::now()),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return ControlFlow::Break(()),
    }
    while let Ok(db) = rx.try_recv() {
        timers.wake(db, settings, SystemTime::now());
    }
    for k in timers.take_due(SystemTime::now()) {
        let Some(t) = timers.get_mut(k) else { continue };
        let exiting = ROUND.lock();
        if *exiting {
            return ControlFlow::Break(());
        }
        let round = crate::panic_guard::catch(|| {
            crate::fencing::poll(&t.db);
            run_due(&t.db, &mut t.schedule, settings, SystemTime::now());
        });
        match round {
            Ok(()) => {
                t.supervision.finished();
                timers.after_round(k, SystemTime::now(), false);
            }
            Err(p) => {
                if compaction_panicked(&t.db, p.0, t.supervision.panicked()) {
                    timers.after_round(k, SystemTime::now(), true);
                } else {
                    timers.remove(k);
                }
            }
        }
        drop(exiting);
    }
    ControlFlow::Continue(())
}

/// Reports a panic in a compaction round of `db`; false when compaction of `db` stops (it
/// panicked again in the first round after the previous panic). The jobs of the round that
/// panicked run again at their next boundary, which is the restart's backoff.
fn compaction_panicked(db: &Database, message: String, after: AfterPanic) -> bool {
    let keep = after != AfterPanic::Stop;
    let err = if keep {
        CompactError::Panicked { message }
    } else {
        CompactError::Stopped { message }
    };
    tracing::error!(db = %db.path.display(), replica = %db.client.describe(), error = %err, "the compactor panicked on this database (please report)");
    if keep {
        db.progress.sync_failed(err.to_string());
    } else {
        db.progress.stopped(err.to_string());
    }
    keep
}

/// Where merges write their output before it is stored: `<meta dir>/compact`.
pub fn work_dir(db: &Database) -> PathBuf {
    db.meta.root.join("compact")
}

/// Removes what a merge interrupted by a crash left behind.
fn clean_work_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
}

/// Runs the jobs of `db` that are due at `now` and have something new to read, in order:
/// levels 1..n, the snapshot with its retention, then L0 retention. A failed job is logged and
/// retried at its next boundary. The fence is checked (and the lease taken or renewed) only
/// when a job runs, so an idle database makes no requests.
pub fn run_due(db: &Database, schedule: &mut Schedule, settings: &Settings, now: SystemTime) {
    let due = schedule.take_due(settings, now);
    if due.is_empty() || !db.is_stager() {
        // Nothing due, or another process of this machine stages and ships this database.
        return;
    }
    schedule
        .activity
        .observe(db.uploads.load(std::sync::atomic::Ordering::Acquire));
    if !due.jobs.iter().any(|j| schedule.activity.needed(*j, now)) {
        return;
    }
    let state = db.sync_state.lock().state.clone();
    match crate::fencing::gate(db, &state) {
        Ok(true) => {}
        Ok(false) => return, // not the replica's writer (logged by the fence)
        Err(e) => {
            // The store is unreachable: the uploader reports it as its sync error.
            tracing::debug!(db = %db.path.display(), error = %e, "compaction skipped: cannot check the writer lease");
            return;
        }
    }
    let fenced = fenced::Fenced {
        db: &db.path,
        client: &db.client,
    };
    let client: &dyn crate::replica::ReplicaClient = &fenced;
    let dir = work_dir(db);
    let log = |what: &str, e: &CompactError| {
        tracing::warn!(db = %db.path.display(), replica = %client.describe(), job = what, error = %e, "compaction job failed; will retry at its next interval");
    };
    let cache = L0Cache::new(&db.meta);
    for job in due.jobs {
        // Checked again here: a level merged earlier in this round is new input for the next.
        if !schedule.activity.needed(job, now) {
            continue;
        }
        let inputs = schedule.activity.inputs(job);
        let ok = match job {
            schedule::Job::Level(level) => match compact_level(client, level, &dir, Some(&cache)) {
                Ok(written) => {
                    if !written.is_empty() {
                        schedule.activity.stored(level);
                    }
                    if let (1, Some(last)) = (level, written.last()) {
                        cache.prune_through(last.max_txid);
                    }
                    if !written.is_empty() && !schedule.has_snapshot {
                        schedule.snapshot_soon();
                    }
                    true
                }
                Err(e) => {
                    log("compaction", &e);
                    false
                }
            },
            schedule::Job::Snapshot => {
                let not_before = previous_boundary(now, settings.snapshot_interval);
                let mut ok = match snapshot(client, &dir, Some(not_before), Some(&cache)) {
                    Ok(Some(_)) => {
                        schedule.has_snapshot = true;
                        schedule.activity.stored(crate::replica::SNAPSHOT_LEVEL);
                        true
                    }
                    Ok(None) => {
                        schedule.has_snapshot = client
                            .list(crate::replica::SNAPSHOT_LEVEL)
                            .is_ok_and(|v| !v.is_empty());
                        true
                    }
                    Err(e) => {
                        log("snapshot", &e);
                        false
                    }
                };
                if settings.retention_enabled {
                    if let Err(e) =
                        enforce_snapshot_retention(client, settings.snapshot_retention, now)
                    {
                        log("retention", &e);
                        ok = false;
                    }
                }
                ok
            }
            schedule::Job::L0Retention => {
                let pass = if settings.retention_enabled {
                    l0_retention_pass(client, settings.l0_retention, now)
                } else {
                    Ok((Vec::new(), None))
                };
                match pass {
                    Ok((_, settles_at)) => {
                        schedule.activity.l0_retention_succeeded(inputs, settles_at);
                    }
                    Err(e) => log("l0 retention", &e),
                }
                continue;
            }
        };
        if ok {
            schedule.activity.succeeded(job, inputs);
        }
    }
}

#[cfg(test)]
mod tests;

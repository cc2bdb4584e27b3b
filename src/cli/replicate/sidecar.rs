//! `litestream replicate` without `-exec`: sidecar mode (`docs/sidecar.md`). This process
//! loads the engine ([`crate::ffi::engine_host`]), opens each configured database through the
//! `litestream` VFS and becomes its stager; woken by inotify on the database's directory, it
//! copies what other processes committed ([`super::read_guard`]). SIGINT and SIGTERM: a final
//! sync, then exit 0.

use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::read_guard::{FollowError, Followed, Step};
use super::Replicate;
use crate::ffi::engine_host::{self, EngineHostError};
use crate::ffi::process;

/// First wait before looking again at a database another process is committing or
/// checkpointing: a 1-row commit holds the write lock for well under a millisecond.
const BUSY_RETRY_FIRST: Duration = Duration::from_millis(1);
/// Longest wait between looks while one transaction stays open: bounds the lag it adds after
/// the commit, at 20 looks a second at most.
const BUSY_RETRY_MAX: Duration = Duration::from_millis(50);
/// Wait before retrying a database whose look failed (an I/O error, a busy SQLite): the error
/// is logged at each retry, so not faster than once a second.
const ERROR_RETRY: Duration = Duration::from_secs(1);
/// How long the final copy (at a stop signal, or with `-once`) waits for a transaction or a
/// checkpoint of another process to end; after it, what is committed since waits in the WAL
/// for the next run.
const FINAL_COPY_WAIT: Duration = Duration::from_secs(5);
/// inotify read buffer: a few dozen events per read; more just take another read.
const EVENT_BUFFER: usize = 4096;

/// Why sidecar mode cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Engine(#[from] EngineHostError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("cannot watch {dir} for changes (inotify): {source}; raise fs.inotify.max_user_watches or max_user_instances")]
    Watch { dir: String, source: std::io::Error },
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error("{db}: {source}")]
    Sync {
        db: String,
        source: crate::uploader::SyncNowError,
    },
    #[error("the {dir} watch failed: {message}; restart litestream replicate")]
    WatchFailed { dir: String, message: String },
    #[error(
        "no databases to replicate: add dbs to the configuration, or give DB_PATH REPLICA_URL"
    )]
    NoDatabases,
}

enum Event {
    /// A file of database `i` (the database or its `-wal`) changed.
    Changed(usize),
    /// Every database may have changed (the kernel dropped events).
    All,
    Stop(i32),
    WatchFailed(String),
}

/// Runs sidecar mode; `Ok` after `-once`, or after a stop signal and the final sync.
pub fn run(r: &Replicate, once: bool, force_snapshot: bool) -> Result<(), SidecarError> {
    if r.config.dbs.is_empty() {
        return Err(SidecarError::NoDatabases);
    }
    if !once {
        // Before any thread starts, so that every thread inherits the mask.
        process::block_stop_signals().map_err(SidecarError::Signals)?;
    }
    // The engine reads the configuration the way the extension does.
    std::env::set_var("LITESTREAM_CONFIG", &r.config_file);
    if !r.expand {
        std::env::set_var(crate::config::NO_EXPAND_ENV, "1");
    }
    engine_host::load_engine()?;
    let mut dbs = Vec::new();
    for c in &r.config.dbs {
        let f = Followed::open(&c.path)?;
        if force_snapshot {
            f.db.require_full("-force-snapshot");
        }
        dbs.push(f);
    }
    tracing::info!(
        dbs = dbs.len(),
        once,
        "replicating as a sidecar: copying what other processes commit"
    );
    if once {
        return finish(dbs);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    start_watch(&dbs, tx.clone())?;
    std::thread::Builder::new()
        .name("litestream-signals".into())
        .spawn(move || {
            crate::panic_guard::supervise("litestream-signals", || {
                match process::wait_stop_signal() {
                    Ok(sig) => {
                        let _ = tx.send(Event::Stop(sig));
                        ControlFlow::Break(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                        ControlFlow::Continue(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot wait for stop signals; stop litestream with SIGKILL");
                        ControlFlow::Break(())
                    }
                }
            })
        })
        .map_err(|e| SidecarError::Thread("litestream-signals", e))?;
    follow(&mut dbs, &rx)?;
    finish(dbs)
}

/// A database to look at again at `at`, and the wait before the one after.
#[derive(Clone, Copy)]
struct Retry {
    at: Instant,
    next: Duration,
}

/// Looks at database `f`; returns when to look again, if needed.
fn look(f: &mut Followed, retry: Option<Retry>) -> Option<Retry> {
    let now = Instant::now();
    match f.step() {
        Ok(Step::Done) => None,
        Ok(Step::Busy) => {
            let wait = retry.map_or(BUSY_RETRY_FIRST, |r| r.next);
            Some(Retry {
                at: now + wait,
                next: (wait * 2).min(BUSY_RETRY_MAX),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, retry_in_ms = ERROR_RETRY.as_millis() as u64, "cannot copy new commits");
            Some(Retry {
                at: now + ERROR_RETRY,
                next: BUSY_RETRY_FIRST,
            })
        }
    }
}

/// The main loop: wait for a change, look at the databases it concerns, until a stop signal.
fn follow(dbs: &mut [Followed], rx: &Receiver<Event>) -> Result<(), SidecarError> {
    let mut retries: Vec<Option<Retry>> = vec![None; dbs.len()];
    // The first look copies what was committed while no sidecar ran.
    let mut due: Vec<bool> = vec![true; dbs.len()];
    loop {
        for (i, f) in dbs.iter_mut().enumerate() {
            let retry = retries[i];
            if due[i] || retry.is_some_and(|r| r.at <= Instant::now()) {
                due[i] = false;
                retries[i] = look(f, retry);
            }
        }
        let deadline = retries.iter().flatten().map(|r| r.at).min();
        let first = match deadline {
            Some(d) => match rx.recv_deadline(d) {
                Ok(e) => Some(e),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
            },
            None => match rx.recv() {
                Ok(e) => Some(e),
                Err(_) => return Ok(()),
            },
        };
        for event in first.into_iter().chain(rx.try_iter()) {
            match event {
                Event::Changed(i) => due[i] = true,
                Event::All => due.iter_mut().for_each(|d| *d = true),
                Event::Stop(sig) => {
                    tracing::info!(signal = sig, "stop signal received; final sync");
                    return Ok(());
                }
                Event::WatchFailed(message) => {
                    return Err(SidecarError::WatchFailed {
                        dir: "database directory".into(),
                        message,
                    })
                }
            }
        }
    }
}

/// The final copy and sync of every database (stop signal or `-once`), then the connections
/// are closed. The first error is returned after every database had its turn.
fn finish(mut dbs: Vec<Followed>) -> Result<(), SidecarError> {
    let mut first_error = None;
    for f in &mut dbs {
        let give_up = Instant::now() + FINAL_COPY_WAIT;
        let mut retry = None;
        loop {
            retry = look(f, retry);
            match retry {
                Some(r) if r.at < give_up => {
                    std::thread::sleep(r.at.saturating_duration_since(Instant::now()))
                }
                Some(_) => {
                    tracing::warn!(db = %f.db.path.display(), "another process kept a transaction or checkpoint open; what it commits is copied at the next run");
                    break;
                }
                None => break,
            }
        }
        if !f.db.is_stager() {
            continue; // the process that stages it ships it
        }
        let timeout = crate::config::global()
            .ok()
            .flatten()
            .map_or(FINAL_COPY_WAIT, |c| c.shutdown_sync_timeout);
        match crate::uploader::sync_now(&f.db, timeout) {
            Ok(txid) => {
                tracing::info!(db = %f.db.path.display(), txid = %crate::format_txid(txid), "synced")
            }
            Err(source) => {
                first_error.get_or_insert(SidecarError::Sync {
                    db: f.db.path.display().to_string(),
                    source,
                });
            }
        }
    }
    for f in dbs {
        f.close();
    }
    first_error.map_or(Ok(()), Err)
}

/// Watches each database's directory for changes of the database file and its `-wal` (a
/// commit writes the `-wal`, a checkpoint the database), and starts the thread that turns the
/// kernel's events into [`Event`]s. Nothing runs while no file changes.
fn start_watch(dbs: &[Followed], tx: Sender<Event>) -> Result<(), SidecarError> {
    let watch_err = |dir: &Path, source| SidecarError::Watch {
        dir: dir.display().to_string(),
        source,
    };
    let mut inotify = Inotify::init().map_err(|e| watch_err(Path::new("/"), e))?;
    let mut names: HashMap<(WatchDescriptor, OsString), usize> = HashMap::new();
    for (i, f) in dbs.iter().enumerate() {
        let path = &f.db.path;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let wd = inotify
            .watches()
            .add(
                dir,
                WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO,
            )
            .map_err(|e| watch_err(dir, e))?;
        let mut wal = name.to_owned();
        wal.push("-wal");
        names.insert((wd.clone(), name.to_owned()), i);
        names.insert((wd, wal), i);
    }
    let mut buf = vec![0u8; EVENT_BUFFER];
    std::thread::Builder::new()
        .name("litestream-watch".into())
        .spawn(move || {
            crate::panic_guard::supervise("litestream-watch", || {
                let events = match inotify.read_events_blocking(&mut buf) {
                    Ok(events) => events,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                        return ControlFlow::Continue(())
                    }
                    Err(e) => {
                        let _ = tx.send(Event::WatchFailed(e.to_string()));
                        return ControlFlow::Break(());
                    }
                };
                for e in events {
                    let event = if e.mask.contains(EventMask::Q_OVERFLOW) {
                        Some(Event::All)
                    } else {
                        e.name
                            .and_then(|n| names.get(&(e.wd.clone(), n.to_owned())))
                            .map(|&i| Event::Changed(i))
                    };
                    if let Some(event) = event {
                        if tx.send(event).is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                }
                ControlFlow::Continue(())
            })
        })
        .map_err(|e| SidecarError::Thread("litestream-watch", e))?;
    Ok(())
}

//! The compactor's one timer heap for the whole process. It holds only databases with pending
//! work: a database whose jobs have nothing new to read is *parked* (known, but in no timer)
//! and costs nothing until the uploader stores its next L0 file and wakes it
//! ([`super::watch`]). So an idle process wakes for no database, however many are open.
//!
//! A database that was idle when the previous process left it (its `compacted` marker equals
//! the sealed TXID in `state.json`), or that this library never shipped (sealed TXID 0),
//! starts parked: opening it makes no request.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::schedule::{Schedule, Settings};
use crate::database::Database;
use crate::panic_guard::Supervision;

/// The marker file in the meta directory: the sealed TXID through which every compaction job
/// had nothing left to do when the database last went idle.
pub const MARKER_FILE: &str = "compacted";

pub struct Tracked {
    pub db: Arc<Database>,
    pub schedule: Schedule,
    pub supervision: Supervision,
    /// The time of this database's live heap entry; `None` while parked.
    queued: Option<SystemTime>,
}

#[derive(Default)]
pub struct Timers {
    tracked: HashMap<usize, Tracked>,
    /// (due, key); an entry whose due is not the database's `queued` is stale and skipped.
    heap: BinaryHeap<Reverse<(SystemTime, usize)>>,
}

fn key(db: &Arc<Database>) -> usize {
    Arc::as_ptr(db) as usize
}

fn marker_path(db: &Database) -> PathBuf {
    db.meta.root.join(MARKER_FILE)
}

/// Longest marker file read: a decimal TXID and a newline.
const MARKER_MAX_BYTES: u64 = 32;

/// The sealed TXID of `db` when everything sealed was acknowledged by the replica.
fn shipped_txid(db: &Database) -> Option<u64> {
    let st = db.sync_state.lock();
    (st.state.txid == st.state.replicated_txid).then_some(st.state.txid)
}

/// True when the previous process left `db` fully compacted at its current sealed TXID (as
/// recorded in `state.json`; a larger TXID means it sealed more after it went idle).
fn settled_on_disk(db: &Database, txid: u64) -> bool {
    let marker = crate::small_file::read_bounded(&marker_path(db), MARKER_MAX_BYTES)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    txid > 0 && marker == Some(txid)
}

/// When `t` needs its next round: the earliest boundary of a job that has something to read
/// (or will have, as L0 files age), within [`super::MAX_SLEEP`] while the writer fence refuses
/// it; `None` (parked) once nothing is left, or while another process stages it.
fn next_time(t: &mut Tracked, now: SystemTime) -> Option<SystemTime> {
    let fence = crate::fencing::refused(&t.db.path).then(|| now + super::MAX_SLEEP);
    if !t.db.is_stager() {
        return fence;
    }
    t.schedule
        .activity
        .observe(t.db.uploads.load(Ordering::Acquire));
    [t.schedule.next_needed(now), fence]
        .into_iter()
        .flatten()
        .min()
}

impl Timers {
    /// When the earliest timer fires; `None` when every database is parked.
    pub fn next_wake(&mut self) -> Option<SystemTime> {
        while let Some(Reverse((due, k))) = self.heap.peek().copied() {
            if self.tracked.get(&k).is_some_and(|t| t.queued == Some(due)) {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// `db` may have work: starts tracking it (a start-up round at once, unless it was left
    /// settled), or wakes it from parking at its jobs' next boundaries, or moves its timer
    /// earlier when a new upload makes an earlier job needed.
    pub fn wake(&mut self, db: Arc<Database>, settings: &Settings, now: SystemTime) {
        let k = key(&db);
        let t = match self.tracked.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let t = e.into_mut();
                if t.queued.is_none() {
                    t.schedule.resume(settings, now);
                }
                t
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut schedule = Schedule::new(settings, now);
                let sealed = db.sync_state.lock().state.txid;
                if sealed == 0 || settled_on_disk(&db, sealed) {
                    // Nothing of this process's to compact yet (a new database: its first
                    // upload wakes it, and the first L1 file brings a snapshot), or left settled.
                    let uploads = db.uploads.load(Ordering::Acquire);
                    schedule.activity.settle(settings, uploads);
                    schedule.resume(settings, now);
                    schedule.has_snapshot = sealed > 0;
                } else if db.is_stager() {
                    // Another process's merge may be under way in a shared meta directory.
                    super::clean_work_dir(&super::work_dir(&db));
                }
                e.insert(Tracked {
                    db,
                    schedule,
                    supervision: Supervision::default(),
                    queued: None,
                })
            }
        };
        if let Some(due) = next_time(t, now) {
            if t.queued.is_none_or(|q| due < q) {
                t.queued = Some(due);
                self.heap.push(Reverse((due, k)));
            }
        }
    }

    /// Takes the databases whose timer is due at `now` out of the heap.
    pub fn take_due(&mut self, now: SystemTime) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(Reverse((at, k))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(t) = self.tracked.get_mut(&k) {
                if t.queued == Some(at) {
                    t.queued = None;
                    due.push(k);
                }
            }
        }
        due
    }

    pub fn get_mut(&mut self, k: usize) -> Option<&mut Tracked> {
        self.tracked.get_mut(&k)
    }

    /// After a round of `k`: queues it again when a job of it has something to do, or parks
    /// it, recording on disk that it is settled so that the next process does not run a
    /// start-up round for it. `retry`: the round panicked; its jobs run at their next boundary.
    pub fn after_round(&mut self, k: usize, now: SystemTime, retry: bool) {
        let Some(t) = self.tracked.get_mut(&k) else {
            return;
        };
        let at = if retry {
            Some(t.schedule.next_due())
        } else {
            next_time(t, now)
        };
        match at {
            Some(due) => {
                t.queued = Some(due);
                self.heap.push(Reverse((due, k)));
            }
            None => {
                t.queued = None;
                if let Some(txid) = shipped_txid(&t.db).filter(|_| t.db.is_stager()) {
                    // Best effort: without the marker the next process runs one start-up round.
                    if let Err(e) = std::fs::write(marker_path(&t.db), format!("{txid}\n")) {
                        tracing::debug!(db = %t.db.path.display(), error = %e, "cannot record that compaction is settled");
                    }
                }
            }
        }
    }

    /// Stops tracking `k` (its compaction stopped after repeated panics).
    pub fn remove(&mut self, k: usize) {
        self.tracked.remove(&k);
    }
}

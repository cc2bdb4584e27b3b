//! Replication progress of one managed database, in memory: which committed transactions the
//! replica has not acknowledged yet, since when, and how the last sync went.
//!
//! Every transaction captured in this process gets a sequence number. Captured transactions
//! are tracked as [`Span`]s that move with the data: per staging segment while unsealed, per
//! TXID once sealed into an L0 file, and gone once the replica acknowledged that TXID. So the
//! lag is exact (the commit time of the oldest transaction still pending), and
//! [`Progress::wait_acked`] can wait for "everything committed before now".
//!
//! The uploader and the capture update it through a few hooks; status readers
//! (`PRAGMA litestream.status`, `litestream_lag()`, metrics) read a [`Snapshot`] without any I/O
//! and without waiting for an upload in progress. The lock is a leaf: no other lock is taken
//! while it is held.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use crate::TxId;

/// A run of captured transactions that travel together (one segment, or one L0 file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Sequence numbers of the first and last transaction (inclusive).
    pub first: u64,
    pub last: u64,
    /// Commit time (ms since the Unix epoch) of the oldest transaction in the span.
    pub oldest_ms: i64,
    /// Bytes staged locally for the span (segment bytes, then the L0 file's size).
    pub bytes: u64,
}

impl Span {
    fn merge(self, o: Span) -> Span {
        Span {
            first: self.first.min(o.first),
            last: self.last.max(o.last),
            oldest_ms: self.oldest_ms.min(o.oldest_ms),
            bytes: self.bytes + o.bytes,
        }
    }

    fn txns(&self) -> u64 {
        self.last + 1 - self.first
    }
}

fn merge_opt(a: Option<Span>, b: Span) -> Span {
    match a {
        Some(a) => a.merge(b),
        None => b,
    }
}

#[derive(Debug, Default)]
struct State {
    /// Sequence number of the next captured transaction (the first is 1).
    next: u64,
    /// Committed and recorded at the commit point, not copied into staging yet (lazy capture).
    uncopied: Option<Span>,
    /// Captured, not sealed yet: by staging segment.
    unsealed: BTreeMap<u64, Span>,
    /// Sealed without producing a file (the chain restarts with the next full image), or sealed
    /// into files that were dropped: still pending, shipped with the next sealed file.
    carried: Option<Span>,
    /// Sealed into an L0 file, not acknowledged: by TXID.
    sealed: BTreeMap<TxId, Span>,
    txid: TxId,
    replicated_txid: TxId,
    last_sync: Option<SystemTime>,
    last_error: Option<String>,
    /// Set while the newest capture failed: the transactions it missed are not counted anywhere.
    capture_error: Option<String>,
    /// Set when replication of the database stopped for good in this process (a background
    /// thread panicked again right after its restart); never cleared.
    stopped: Option<String>,
}

impl State {
    fn spans(&self) -> impl Iterator<Item = &Span> {
        self.uncopied
            .iter()
            .chain(self.unsealed.values())
            .chain(self.carried.iter())
            .chain(self.sealed.values())
    }

    /// True when no transaction with a sequence number `<= target` is still pending.
    fn acked_through(&self, target: u64) -> bool {
        self.spans().all(|s| s.first > target)
    }
}

/// What status readers see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Highest TXID sealed into a local L0 file.
    pub txid: TxId,
    /// Highest TXID the replica acknowledged.
    pub replicated_txid: TxId,
    /// SQLite transactions committed and captured but not acknowledged by the replica.
    pub pending_txns: u64,
    /// Bytes staged locally for them.
    pub pending_bytes: u64,
    /// Commit time (ms since the epoch) of the oldest pending transaction.
    pub oldest_pending_ms: Option<i64>,
    pub last_sync: Option<SystemTime>,
    pub last_error: Option<String>,
    pub capture_error: Option<String>,
    /// Why replication of the database stopped in this process, if it did.
    pub stopped: Option<String>,
}

impl Snapshot {
    /// Age in seconds of the oldest pending transaction at `now_ms`; 0.0 when caught up.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        match self.oldest_pending_ms {
            Some(t) => (now_ms.saturating_sub(t)).max(0) as f64 / 1000.0,
            None => 0.0,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Progress {
    state: Mutex<State>,
    changed: Condvar,
}

impl Progress {
    pub fn new(txid: TxId, replicated_txid: TxId) -> Progress {
        Progress {
            state: Mutex::new(State {
                next: 1,
                txid,
                replicated_txid,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// Forgets everything tracked and starts over at `txid` / `replicated_txid` (this process
    /// took over staging from another one, whose records it then replays).
    pub fn reset(&self, txid: TxId, replicated_txid: TxId) {
        let mut st = self.state.lock();
        let (last_sync, stopped) = (st.last_sync, st.stopped.take());
        *st = State {
            next: 1,
            txid,
            replicated_txid,
            last_sync,
            stopped,
            ..State::default()
        };
        drop(st);
        self.changed.notify_all();
    }

    /// One transaction committed at `at_ms` and recorded at its commit point; it is copied
    /// into staging later (lazy capture) and counted as pending from now on.
    pub fn committed(&self, at_ms: i64) {
        let mut st = self.state.lock();
        let span = Span {
            first: st.next,
            last: st.next,
            oldest_ms: at_ms,
            bytes: 0,
        };
        st.next += 1;
        st.uncopied = Some(merge_opt(st.uncopied.take(), span));
    }

    /// `txns` transactions committed (the newest at `at_ms`) were appended (`bytes`) to staging
    /// segment `segment`: the commits recorded before (see [`Progress::committed`]) and, past
    /// their count, others (e.g. another process's). Also used when recovering segments at
    /// open.
    pub fn captured(&self, segment: u64, txns: usize, bytes: u64, at_ms: i64) {
        if txns == 0 {
            return;
        }
        let mut st = self.state.lock();
        let recorded = st.uncopied.take();
        let extra = (txns as u64).saturating_sub(recorded.map_or(0, |r| r.txns()));
        let span = match recorded {
            Some(r) => Span {
                first: r.first,
                last: r.last + extra,
                oldest_ms: r.oldest_ms.min(at_ms),
                bytes,
            },
            None => Span {
                first: st.next,
                last: st.next + extra - 1,
                oldest_ms: at_ms,
                bytes,
            },
        };
        st.next += extra;
        st.capture_error = None;
        let merged = merge_opt(st.unsealed.get(&segment).copied(), span);
        st.unsealed.insert(segment, merged);
    }

    /// A capture failed: the transactions it should have staged are not tracked until the
    /// next capture succeeds.
    pub fn capture_failed(&self, msg: String) {
        self.state.lock().capture_error = Some(msg);
    }

    /// A sealed L0 file found at open (sealed by an earlier process, not acknowledged). Its
    /// transactions count as one, with the file's timestamp (its newest commit) as their time.
    pub fn recovered_sealed(&self, txid: TxId, timestamp_ms: i64, bytes: u64) {
        let mut st = self.state.lock();
        let span = Span {
            first: st.next,
            last: st.next,
            oldest_ms: timestamp_ms,
            bytes,
        };
        st.next += 1;
        st.sealed.insert(txid, span);
    }

    /// Segments up to `through_segment` were sealed: into the file of `txid` (`bytes` long),
    /// or into nothing (`None`: discarded until the next full image, which will carry them).
    pub fn sealed(&self, through_segment: u64, txid: Option<TxId>, bytes: u64) {
        let mut st = self.state.lock();
        let later = st.unsealed.split_off(&(through_segment + 1));
        let done = std::mem::replace(&mut st.unsealed, later);
        let mut span = st.carried.take();
        for s in done.into_values() {
            span = Some(merge_opt(span, s));
        }
        match txid {
            Some(txid) => {
                st.txid = st.txid.max(txid);
                if let Some(mut s) = span {
                    s.bytes = bytes;
                    st.sealed.insert(txid, s);
                }
            }
            None => st.carried = span,
        }
    }

    /// The replica acknowledged every TXID up to `txid`.
    pub fn acked(&self, txid: TxId) {
        let mut st = self.state.lock();
        let rest = st.sealed.split_off(&(txid + 1));
        st.sealed = rest;
        st.replicated_txid = st.replicated_txid.max(txid);
        drop(st);
        self.changed.notify_all();
    }

    /// The chain restarts at `txid` (the replica disagreed with the local position): sealed
    /// files were dropped, so their transactions wait for the next full image.
    pub fn restarted(&self, txid: TxId) {
        let mut st = self.state.lock();
        let sealed = std::mem::take(&mut st.sealed);
        let mut carried = st.carried.take();
        for s in sealed.into_values() {
            carried = Some(merge_opt(carried, s));
        }
        st.carried = carried;
        st.txid = txid;
        st.replicated_txid = txid;
    }

    /// A sync succeeded. Returns the error it recovers from, if the previous one had failed.
    pub fn sync_ok(&self) -> Option<String> {
        let mut st = self.state.lock();
        st.last_sync = Some(SystemTime::now());
        let was = st.last_error.take();
        drop(st);
        self.changed.notify_all();
        was
    }

    /// A sync failed with `msg` (it is retried).
    pub fn sync_failed(&self, msg: String) {
        self.state.lock().last_error = Some(msg);
        self.changed.notify_all();
    }

    /// Replication of the database stopped for good in this process, for `msg`: every later
    /// snapshot reports it (a first reason is kept).
    pub fn stopped(&self, msg: String) {
        self.state.lock().stopped.get_or_insert(msg);
        self.changed.notify_all();
    }

    /// The sequence number of the newest captured transaction (0: none yet).
    pub fn newest(&self) -> u64 {
        self.state.lock().next - 1
    }

    /// Waits until every transaction up to sequence number `target` is acknowledged, or until
    /// `timeout` passes. True when acknowledged.
    pub fn wait_acked(&self, target: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if st.acked_through(target) {
                return true;
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return st.acked_through(target);
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        let mut snap = Snapshot {
            txid: st.txid,
            replicated_txid: st.replicated_txid,
            last_sync: st.last_sync,
            last_error: st.last_error.clone(),
            capture_error: st.capture_error.clone(),
            stopped: st.stopped.clone(),
            ..Snapshot::default()
        };
        for s in st.spans() {
            snap.pending_txns += s.txns();
            snap.pending_bytes += s.bytes;
            snap.oldest_pending_ms = Some(
                snap.oldest_pending_ms
                    .map_or(s.oldest_ms, |t| t.min(s.oldest_ms)),
            );
        }
        snap
    }
}

/// Registers the sealed L0 files an earlier process left unacknowledged (at open). Unreadable
/// files are skipped here: the uploader reports them when it tries to upload them.
pub fn recover_sealed(progress: &Progress, meta: &crate::staging::MetaDir, replicated: TxId) {
    let Ok(files) = meta.list_l0() else { return };
    for (min, max) in files.into_iter().filter(|&(_, max)| max > replicated) {
        let path = meta.l0_path(min, max);
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut buf = [0u8; crate::ltx::HEADER_SIZE];
        let header = crate::staging::read_page_at(&file, 0, &mut buf)
            .ok()
            .and_then(|()| crate::ltx::Header::decode(&buf).ok());
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Some(h) = header {
            progress.recovered_sealed(max, h.timestamp_ms, bytes);
        }
    }
}

#[cfg(test)]
mod tests;

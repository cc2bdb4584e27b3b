//! What an idle database keeps: after the uploader shipped everything, the descriptors and
//! buffers it needs only while writing are dropped and reopened at the next capture.

use std::sync::atomic::Ordering;

use super::Database;

impl Database {
    /// Called by the uploader after a sync left nothing to do: closes our `-wal` descriptor and
    /// an empty active segment (its file is removed, and its write buffer freed); the next
    /// capture reopens both. Kept: the stager lock (its descriptor is the lock) and, while
    /// SQLite has the database open in this process, our database descriptor, because closing
    /// any descriptor of a file drops every POSIX lock the process holds on it (SQLite's too).
    /// Does nothing while commits are recorded but not copied yet.
    pub(crate) fn close_idle_files(&self) {
        let mut inner = self.inner.lock();
        if self.dirty.load(Ordering::Acquire) || self.pending.lock().recorded().is_some() {
            return;
        }
        inner.wal_file = None;
        if inner.segment.as_ref().is_some_and(|s| s.is_empty()) {
            let seq = inner.segment_seq;
            inner.segment = None;
            // Recreated (with the same number) by the next capture; an empty one on disk
            // would look like a closed segment to the next rotation.
            let _ = std::fs::remove_file(self.meta.segment_path(seq));
        }
        if inner.open_handles == 0 {
            inner.db_file = None;
        }
    }

    /// True when a previous run left something to ship: segments not sealed yet, or sealed
    /// L0 files not acknowledged by the replica (also when the meta directory cannot be read:
    /// the uploader then reports why).
    pub fn has_staged_work(&self) -> bool {
        if self.dirty.load(Ordering::Acquire) {
            return true;
        }
        let sealed = self.sync_state.lock().state.sealed_segment;
        let segments = self.meta.list_segments();
        let l0 = self.meta.list_l0();
        !matches!((segments, l0), (Ok(s), Ok(l)) if l.is_empty() && s.iter().all(|&seq| seq <= sealed))
    }
}

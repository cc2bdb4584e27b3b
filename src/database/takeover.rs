//! The stager lock ([`crate::stager`]) from one database's side: taking it (and recovering
//! what the meta directory records, as a restarting process would), and handing it over.

use super::*;

/// Loads what the meta directory records (state, staged segments, sealed files) into the
/// capture state, the progress tracker and the segment numbering; true when something staged
/// waits for the uploader. Only the stager lock's holder calls this.
pub(super) fn recover(
    path: &Path,
    meta: &MetaDir,
    progress: &crate::progress::Progress,
    inner: &mut Inner,
) -> Result<bool, StagingError> {
    let state = meta.load_state()?.unwrap_or_default();
    let mut capture = CaptureState {
        pos: state.wal,
        closed: state.closed,
        need_full: None,
        db_size: state.commit,
        page_size: state.page_size,
        scratch: Default::default(),
    };
    progress.reset(state.txid, state.replicated_txid);
    crate::progress::recover_sealed(progress, meta, state.replicated_txid);
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
        let wal_has_frames = std::fs::metadata(wal_path(path))
            .map(|m| m.len() > 32)
            .unwrap_or(false);
        if fingerprint(path) != Some(f) && !wal_has_frames {
            capture.require_full("database changed without litestream since the last run");
        }
    }
    inner.capture = capture;
    inner.segment_seq = segments
        .last()
        .copied()
        .unwrap_or(state.sealed_segment + 1)
        .max(state.sealed_segment + 1);
    Ok(!segments.is_empty())
}

impl Database {
    /// True while this process holds the stager lock: it alone captures, seals and uploads.
    pub fn is_stager(&self) -> bool {
        self.inner
            .lock()
            .stager
            .as_ref()
            .is_some_and(|l| l.held_here())
    }

    /// Called by the uploader after a successful sync: when no connection of this process has
    /// the database open and nothing new was captured, gives up the stager lock so that
    /// another process can take over (its next commit or last close does). True when released.
    pub(crate) fn release_stager_if_idle(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.open_handles > 0
            || self.dirty.load(Ordering::Acquire)
            || !inner.stager.as_ref().is_some_and(|l| l.held_here())
        {
            return false;
        }
        inner.segment = None;
        inner.stager = None;
        self.stop_listening(&mut inner);
        self.pending.lock().captured(None);
        tracing::debug!(db = %self.path.display(), "stager lock released");
        true
    }

    /// The uploader's cue that this process just took the stager lock over: the replication
    /// position on disk may be newer than what it holds in memory.
    pub(crate) fn take_reload_sync_state(&self) -> bool {
        self.reload_sync_state.swap(false, Ordering::AcqRel)
    }

    /// Holds the stager lock, taking it (and reloading what the previous holder staged) when
    /// it is free. False while another process holds it, and always in a forked child.
    pub(super) fn ensure_stager(&self, inner: &mut Inner) -> Result<bool, StagingError> {
        if let Some(lock) = &inner.stager {
            if lock.held_here() {
                return Ok(true);
            }
            // A forked child: close its copy of the parent's locked descriptor so that the
            // lock goes away with the parent, never with this child.
            inner.stager = None;
            self.stop_listening(inner);
        }
        if !crate::stager::replicating_here() {
            return Ok(false);
        }
        let Some(lock) = crate::stager::try_lock(&self.meta)? else {
            return Ok(false);
        };
        inner.segment = None;
        inner.wal_file = None;
        let staged = recover(&self.path, &self.meta, &self.progress, inner)?;
        inner.stager = Some(lock);
        self.listen_for_wakes(inner);
        self.reload_sync_state.store(true, Ordering::Release);
        if staged {
            self.dirty.store(true, Ordering::Release);
        }
        tracing::info!(db = %self.path.display(), "this process stages the database now");
        Ok(true)
    }
}

//! Copying what SQLite committed from the `-wal` into the active staging segment: at a
//! commit point (synchronously), before a WAL reset or deletion, and for commits recorded
//! lazily (by the uploader thread). See docs/capture.md.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

impl Database {
    /// Captures what SQLite committed since the last capture, on the calling (application)
    /// thread; true when this capture handed new work to the uploader.
    pub(super) fn capture_now(
        self: &Arc<Self>,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
    ) -> bool {
        let seen_ns = crate::shared_status::now_ns();
        self.capture_now_seen(allow_full, close_generation, mark, seen_ns)
    }

    /// [`Database::capture_now`] with `seen_ns`, a time before `mark` was read (or, without
    /// a mark, before this call): every commit before it is captured when this succeeds.
    pub(super) fn capture_now_seen(
        self: &Arc<Self>,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
        seen_ns: i64,
    ) -> bool {
        let staged = {
            let mut guard = self.inner.lock();
            // Commits recorded lazily are copied first, under their wal-index mark: it
            // vouches for frames a scan without one cannot accept (frames whose checksums
            // SQLite deferred stop an untrusted scan, and everything after them would be
            // left out of the generation being closed).
            let recorded = if mark.is_none() {
                self.recorded_with_ns()
            } else {
                None
            };
            let copied = recorded.is_some_and(|(recorded, at_ms, ns)| {
                self.capture_in(&mut guard, false, false, Some(recorded), at_ms, ns)
            });
            self.capture_in(
                &mut guard,
                allow_full,
                close_generation,
                mark,
                now_ms(),
                seen_ns,
            ) || copied
        };
        // Only the capture that sets `dirty` notifies: a staged marker that set it silently
        // would leave every later commit without a notification (replication would stall).
        let notify = staged && !self.dirty.swap(true, Ordering::AcqRel);
        if notify {
            self.request_sync(false);
        }
        notify
    }

    /// The commit point of `litestream replicate` in sidecar mode (`docs/sidecar.md`): other
    /// processes committed up to `mark`, and this process holds a read transaction that keeps
    /// SQLite from restarting the WAL over those frames; copies them now. `checkpointed`: every
    /// frame up to `mark` is also in the database file, which no checkpoint changes before the
    /// sidecar lets the WAL restart; the generation is recorded closed, so that the next one
    /// continues the chain instead of starting it over with a full image.
    pub fn capture_foreign(self: &Arc<Self>, mark: WalIndexMark, checkpointed: bool) -> bool {
        {
            let mut inner = self.inner.lock();
            let c = &mut inner.capture;
            if let Some(p) = c.pos.filter(|_| c.closed.is_some() && c.page_size > 0) {
                let frame = u64::from(c.page_size) + crate::wal::FRAME_HEADER_SIZE;
                let end = crate::wal::WAL_HEADER_SIZE + u64::from(mark.max_frame) * frame;
                if (p.salt1, p.salt2) == (mark.salt1, mark.salt2) && end > p.offset {
                    // The generation recorded closed went on without a restart (a commit came
                    // before the next writer could restart the WAL): that was not its end, and
                    // the checkpoints since then changed the database file. Its frames continue
                    // the chain.
                    c.closed = None;
                }
            }
        }
        self.capture_now(true, checkpointed, Some(mark))
    }

    /// Copies the commits recorded lazily (see [`crate::pending`]) into staging. Called by the
    /// uploader before it seals, and by the last close.
    pub(crate) fn capture_pending(&self) {
        let Some((mark, at_ms, seen_ns)) = self.recorded_with_ns() else {
            return;
        };
        let mut inner = self.inner.lock();
        // Our database descriptor is opened by a synchronous capture on an application thread,
        // and only closed with the last handle (which copies what is recorded first): never
        // here. The `-wal` one may have been closed while the database was idle
        // (`close_idle_files`): the capture reopens it and checks it against the mark.
        if inner.db_file.is_none() {
            return;
        }
        self.capture_in(&mut inner, false, false, Some(mark), at_ms, seen_ns);
    }

    /// The capture under `inner`, at commit time `at_ms`: stager check, capture, progress and
    /// the lazy-capture base; true when something was staged. `seen_ns`: every commit before
    /// it is at or below `mark` (see [`crate::shared_status`]).
    pub(super) fn capture_in(
        &self,
        inner: &mut Inner,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
        at_ms: i64,
        seen_ns: i64,
    ) -> bool {
        if inner.disabled.is_some() {
            return false;
        }
        match self.ensure_stager(inner) {
            Ok(true) => {}
            // Another process stages: it reads this process's frames from the WAL.
            Ok(false) => return false,
            Err(e) => {
                capture_errors::failed(&mut inner.capture_errors, &self.path, &e);
                self.progress.capture_failed(e.to_string());
                return false;
            }
        }
        let len = |i: &Inner| i.segment.as_ref().map_or(0, |s| s.len());
        let (seq, before) = (inner.segment_seq, len(inner));
        let n = match self.capture_locked(inner, allow_full, close_generation, mark, at_ms) {
            Ok(n) => {
                let bytes = len(inner).saturating_sub(before);
                self.progress.captured(seq, n, bytes, at_ms);
                self.pending.lock().captured(lazy_base(inner));
                if inner.capture.need_full.is_none() {
                    // Nothing waits for a full image: the capture reached the mark.
                    self.captured_ns.fetch_max(seen_ns, Ordering::AcqRel);
                }
                n
            }
            Err(e) => {
                // Never fail the application's commit: the data is still in the WAL, and
                // the next capture retries from the recorded position.
                capture_errors::failed(&mut inner.capture_errors, &self.path, &e);
                self.progress.capture_failed(e.to_string());
                self.pending.lock().disable();
                0
            }
        };
        n > 0 || std::mem::take(&mut inner.marked_closed)
    }

    pub(super) fn capture_locked(
        &self,
        inner: &mut Inner,
        allow_full: bool,
        close_generation: bool,
        mark: Option<WalIndexMark>,
        at_ms: i64,
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
            .capture(wal, db, seg, at_ms, allow_full, mark)?;
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
}

//! Lazy capture: commits recorded at the commit point and copied into staging later, by the
//! uploader thread (design: `docs/capture.md`, "Lazy capture").
//!
//! At a commit point the VFS knows SQLite's wal-index mark (the committed frame count and the
//! generation's salts) without any I/O. When the capture already stands in that WAL generation
//! and nothing unusual is due, the commit only records the mark here; the frames stay in the
//! `-wal`, where nothing can overwrite them before the next WAL restart or truncation, and
//! those run the synchronous capture first (`Database::before_wal_reset`). Everything else
//! (another generation, a full image due, validation mode, a backlog past
//! [`LAZY_BACKLOG_BYTES`]) captures synchronously, as before.
//!
//! Pure bookkeeping, no I/O: [`PendingCommits`] is held behind a leaf mutex for a few
//! instructions per commit.

pub use crate::capture::LazyBase;
use crate::capture::WalIndexMark;

/// Most WAL bytes committed but not yet copied into staging before a commit copies them itself.
/// It bounds the synchronous catch-up that a WAL restart, a truncation or the last close must do
/// on the application's thread (and how long that waits for a copy in progress): 64 MiB is
/// copied in well under a second on a slow disk, and a 4 KiB-page writer reaches it only after
/// about 16,000 pages committed in one sync interval.
pub const LAZY_BACKLOG_BYTES: u64 = 64 * 1024 * 1024;

/// WAL bytes recorded since the last copy request after which the uploader is asked to copy
/// them (without sealing): at most this much is left for a WAL restart to copy on the
/// application's thread, and the uploader is woken at most once per this many bytes (about
/// 60 frames of 4 KiB pages), not at every commit.
pub const COPY_BATCH_BYTES: u64 = 256 * 1024;

/// What the commit point must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitAction {
    /// Recorded; the uploader copies it. `copy`: ask the uploader to copy now (the recorded
    /// backlog reached [`COPY_BATCH_BYTES`] since the last such request).
    Recorded { copy: bool },
    /// The mark holds no frame beyond what is captured or recorded (a transaction that wrote
    /// nothing, or a repeated commit point): nothing to do.
    Nothing,
    /// Capture now, on this thread.
    CaptureNow,
}

/// Commits recorded but not copied into staging yet.
#[derive(Debug, Default)]
pub struct PendingCommits {
    /// Set by the capture while a lazy commit is possible; `None`: capture synchronously.
    base: Option<LazyBase>,
    /// The newest recorded mark.
    mark: Option<WalIndexMark>,
    /// Commit time (ms since the epoch) of the newest recorded commit.
    newest_ms: i64,
    /// Frame count of the mark at the last copy request.
    copy_requested: u32,
}

impl PendingCommits {
    /// A commit point with the wal-index `mark` at `now_ms`.
    pub fn on_commit(&mut self, mark: Option<WalIndexMark>, now_ms: i64) -> CommitAction {
        let (Some(m), Some(b)) = (mark, self.base) else {
            return CommitAction::CaptureNow;
        };
        if (m.salt1, m.salt2) != (b.salt1, b.salt2) || m.max_frame < b.captured_frames {
            return CommitAction::CaptureNow;
        }
        let backlog = u64::from(m.max_frame - b.captured_frames) * b.frame_bytes;
        if backlog > LAZY_BACKLOG_BYTES {
            return CommitAction::CaptureNow;
        }
        let known = self.mark.map_or(b.captured_frames, |p| p.max_frame);
        if m.max_frame <= known {
            return CommitAction::Nothing;
        }
        let since = self.copy_requested.max(b.captured_frames);
        let copy = u64::from(m.max_frame.saturating_sub(since)) * b.frame_bytes >= COPY_BATCH_BYTES;
        if copy {
            self.copy_requested = m.max_frame;
        }
        self.mark = Some(m);
        self.newest_ms = now_ms;
        CommitAction::Recorded { copy }
    }

    /// The newest recorded mark and its commit time, for the copy.
    pub fn recorded(&self) -> Option<(WalIndexMark, i64)> {
        self.mark.map(|m| (m, self.newest_ms))
    }

    /// After any capture: where it stands now (`None` when the next commit must capture
    /// synchronously). Recorded marks it has covered are forgotten; one of another generation
    /// cannot be copied any more (the synchronous capture before the WAL reset took its frames).
    pub fn captured(&mut self, base: Option<LazyBase>) {
        if base.map(|b| (b.salt1, b.salt2)) != self.base.map(|b| (b.salt1, b.salt2)) {
            // Another WAL generation: frame counts start over.
            self.copy_requested = 0;
        }
        self.base = base;
        if let Some(m) = self.mark {
            let covered = match base {
                Some(b) => {
                    (m.salt1, m.salt2) != (b.salt1, b.salt2) || m.max_frame <= b.captured_frames
                }
                None => true,
            };
            if covered {
                self.mark = None;
            }
        }
    }

    /// Stops lazy commits until the next capture says otherwise, keeping nothing recorded
    /// (the caller captures synchronously right after).
    pub fn disable(&mut self) {
        self.base = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 4096 + 24;

    fn mark(max_frame: u32) -> Option<WalIndexMark> {
        Some(WalIndexMark {
            max_frame,
            salt1: 1,
            salt2: 2,
        })
    }

    fn base(captured_frames: u32) -> Option<LazyBase> {
        Some(LazyBase {
            salt1: 1,
            salt2: 2,
            captured_frames,
            frame_bytes: FRAME,
        })
    }

    #[test]
    fn without_a_base_or_a_mark_the_commit_captures_now() {
        let mut p = PendingCommits::default();
        assert_eq!(p.on_commit(mark(3), 1), CommitAction::CaptureNow);
        p.captured(base(3));
        assert_eq!(p.on_commit(None, 1), CommitAction::CaptureNow);
    }

    #[test]
    fn commits_of_the_captured_generation_are_recorded_until_copied() {
        let mut p = PendingCommits::default();
        p.captured(base(3));
        assert_eq!(
            p.on_commit(mark(5), 10),
            CommitAction::Recorded { copy: false }
        );
        assert_eq!(
            p.on_commit(mark(8), 20),
            CommitAction::Recorded { copy: false }
        );
        assert_eq!(
            p.on_commit(mark(8), 30),
            CommitAction::Nothing,
            "no new frame"
        );
        assert_eq!(p.recorded(), Some((mark(8).unwrap(), 20)));
        // The copy reached frame 8: nothing is left to copy.
        p.captured(base(8));
        assert!(p.recorded().is_none());
        assert_eq!(
            p.on_commit(mark(9), 40),
            CommitAction::Recorded { copy: false }
        );
        // A copy up to 8 only keeps the mark of 9.
        p.captured(base(8));
        assert_eq!(p.recorded(), Some((mark(9).unwrap(), 40)));
    }

    #[test]
    fn another_generation_or_a_mark_behind_the_capture_captures_now() {
        let mut p = PendingCommits::default();
        p.captured(base(3));
        let other = Some(WalIndexMark {
            max_frame: 5,
            salt1: 9,
            salt2: 2,
        });
        assert_eq!(p.on_commit(other, 1), CommitAction::CaptureNow);
        assert_eq!(p.on_commit(mark(2), 1), CommitAction::CaptureNow);
    }

    #[test]
    fn a_backlog_past_the_bound_captures_now() {
        let mut p = PendingCommits::default();
        p.captured(base(0));
        let limit = (LAZY_BACKLOG_BYTES / FRAME) as u32;
        assert_eq!(
            p.on_commit(mark(limit), 1),
            CommitAction::Recorded { copy: true }
        );
        assert_eq!(p.on_commit(mark(limit + 1), 2), CommitAction::CaptureNow);
    }

    #[test]
    fn the_uploader_is_asked_to_copy_once_per_batch() {
        let mut p = PendingCommits::default();
        p.captured(base(0));
        let batch = COPY_BATCH_BYTES.div_ceil(FRAME) as u32;
        assert_eq!(
            p.on_commit(mark(batch - 1), 1),
            CommitAction::Recorded { copy: false }
        );
        assert_eq!(
            p.on_commit(mark(batch), 2),
            CommitAction::Recorded { copy: true }
        );
        assert_eq!(
            p.on_commit(mark(batch + 1), 3),
            CommitAction::Recorded { copy: false }
        );
        assert_eq!(
            p.on_commit(mark(2 * batch), 4),
            CommitAction::Recorded { copy: true }
        );
        // After a copy the count starts from what was captured.
        p.captured(base(2 * batch));
        assert_eq!(
            p.on_commit(mark(3 * batch - 1), 5),
            CommitAction::Recorded { copy: false }
        );
        assert_eq!(
            p.on_commit(mark(3 * batch), 6),
            CommitAction::Recorded { copy: true }
        );
    }

    #[test]
    fn a_capture_that_stops_lazy_commits_forgets_the_recorded_mark() {
        let mut p = PendingCommits::default();
        p.captured(base(3));
        p.on_commit(mark(5), 1);
        // The WAL was reset: the synchronous capture took frames 4..5 and closed the generation.
        p.captured(None);
        assert!(p.recorded().is_none());
        assert_eq!(p.on_commit(mark(6), 2), CommitAction::CaptureNow);
        p.captured(base(6));
        p.disable();
        assert_eq!(p.on_commit(mark(7), 3), CommitAction::CaptureNow);
    }
}

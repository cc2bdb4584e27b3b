//! Validation mode (`LITESTREAM_VALIDATE=1`, off by default): after each captured commit,
//! check that the replicated image equals what SQLite sees, and abort loudly if not.
//!
//! Two independent views are kept per database:
//! - **staged**: a checksum per page of the image the staged records describe, built by
//!   reading back every record the capture appended to the segments (so the staging encoding
//!   is checked too). It is *anchored* by the first full image; before that nothing is
//!   compared (a process that resumes staged data from an earlier one starts unanchored).
//! - **SQLite's view**: the wal-index header's committed frame count (what SQLite itself
//!   trusts, not our checksum-chain logic), the latest frame of each page among those frames,
//!   else the database file. The database size is the commit frame's "size after commit", or
//!   the file size when the WAL holds no frame.
//!
//! At each commit point the sizes are compared, then the pages of the frames added since the
//! last check, the pages the database grew by, and a rotating window over all pages.
//! A mismatch is logged at error level, written to stderr, and the process aborts: a capture
//! bug cannot pass silently. Design: `docs/sqlite-testsuite.md`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use thiserror::Error;

use crate::capture::{ReadAt, WalIndexMark};
use crate::ltx::lock_pgno;
use crate::staging::{read_page_at, MetaDir, Record, SegmentReader, StagingError, WalPos};
use crate::wal::{FrameHeader, WalHeader, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

/// The environment variable that turns validation on (`1`).
pub const ENV: &str = "LITESTREAM_VALIDATE";

/// Consecutive commit points at which the capture may stay behind the wal-index mark before
/// that counts as a capture bug: frames buffered by a VFS above ours reach the file at the
/// next sync, i.e. within a commit or two.
const MAX_BEHIND: u32 = 100;

/// Pages compared at each check besides the changed ones: databases up to this many pages
/// (4 MiB at 4 KiB pages, every database of SQLite's WAL tests but a few) are compared whole
/// at every commit; bigger ones in a window that rotates, so one check stays bounded.
const WINDOW_PAGES: u32 = 1024;

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// True when `LITESTREAM_VALIDATE=1` (read once per process).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(ENV).is_ok_and(|v| v.trim() == "1"))
}

#[derive(Debug, Error)]
pub enum ValidateError {
    /// The replicated image differs from SQLite's view: a capture or staging bug.
    #[error("replicated image differs from the database: {0}")]
    Mismatch(String),
    #[error("validation: reading staged data: {0}")]
    Staging(#[from] StagingError),
    #[error("validation: reading {what} at byte {offset}: {source}")]
    Read {
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
}

/// Where SQLite says the committed part of the WAL ends.
#[derive(Debug, Clone, Copy)]
pub enum Committed {
    /// The wal-index header (normal locking mode): SQLite's own word; with the capture's
    /// position, which may legitimately stay behind it for a while (see [`MAX_BEHIND`]).
    Mark(WalIndexMark, Option<WalPos>),
    /// Exclusive locking mode has no shared wal-index: the capture's position is used.
    Pos(WalPos),
}

/// What a check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No full image consumed yet, or the WAL does not match the committed mark.
    Skipped,
    /// Sizes equal and this many pages compared equal.
    Checked { pages: u32 },
}

/// Per-database validation state (lives beside the capture state, under the same lock).
#[derive(Debug, Default)]
pub struct Validator {
    anchored: bool,
    staged: HashMap<u32, u64>,
    db_size: u32,
    page_size: u32,
    /// Records of the active transaction read from a segment, not yet committed.
    pending: Vec<(u32, u64)>,
    /// Next segment record to read: (sequence number, byte offset).
    next_record: Option<(u64, u64)>,
    /// SQLite's view: the WAL indexed in `frames` (its header and first frame), frames
    /// scanned, and the latest frame (1-based index) of each page among them.
    generation: Option<([u8; 32], [u8; 8])>,
    scanned: u32,
    /// Page number and commit field of frame `scanned`, to notice a rewritten WAL.
    last_indexed: [u8; 8],
    frames: HashMap<u32, u32>,
    /// Start of the next rotating window.
    cursor: u32,
    /// Commit points at which the capture was behind the mark, and how many in a row now.
    pub behind: u64,
    behind_streak: u32,
    /// Commit points compared, pages compared, and commit points skipped so far.
    pub checks: u64,
    pub pages: u64,
    pub skipped: u64,
    /// The totals at the last [`log_summary`].
    reported: (u64, u64, u64, u64),
    /// Record mismatches in `mismatch` instead of aborting (unit tests of the capture path).
    record_only: bool,
    /// The first mismatch seen in `record_only` mode.
    pub mismatch: Option<String>,
}

fn hash(page: &[u8]) -> u64 {
    CRC64.checksum(page)
}

fn read_exact_or_zero(
    src: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), ValidateError> {
    let mut done = 0;
    while done < buf.len() {
        let n = src
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(|source| ValidateError::Read {
                what,
                offset,
                source,
            })?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

impl Validator {
    pub fn new() -> Validator {
        Validator::default()
    }

    #[cfg(test)]
    /// A validator that records the first mismatch instead of aborting (for tests).
    pub fn recording() -> Validator {
        Validator {
            record_only: true,
            ..Validator::default()
        }
    }

    /// Reads the records appended to the segments since the last call, up to `complete_len`
    /// bytes of segment `seq` (the active one), and applies the committed ones.
    pub fn consume(
        &mut self,
        meta: &MetaDir,
        seq: u64,
        complete_len: u64,
    ) -> Result<(), ValidateError> {
        let (mut cur, mut off) = self.next_record.unwrap_or((seq, 0));
        while cur < seq {
            // The rest of a segment the uploader rotated away. Its pages and commits were all
            // read right after they were written (at most a closed record may follow), so a
            // segment already sealed and deleted, even while we look, lacks nothing.
            match self.read_records(&meta.segment_path(cur), off, u64::MAX) {
                Err(ValidateError::Staging(StagingError::Io { source, .. }))
                    if source.kind() == io::ErrorKind::NotFound => {}
                other => {
                    other?;
                }
            }
            cur += 1;
            off = 0;
        }
        let end = self.read_records(&meta.segment_path(seq), off, complete_len)?;
        self.next_record = Some((seq, end));
        Ok(())
    }

    fn read_records(&mut self, path: &Path, from: u64, to: u64) -> Result<u64, ValidateError> {
        let mut r = SegmentReader::open_at(path, from)?;
        let file = File::open(path).map_err(|source| StagingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut page = Vec::new();
        while r.position() < to {
            let Some(rec) = r.next_record()? else { break };
            match rec {
                Record::Page { pgno, offset, len } => {
                    page.resize(len as usize, 0);
                    read_page_at(&file, offset, &mut page).map_err(|source| {
                        ValidateError::Read {
                            what: "staged page",
                            offset,
                            source,
                        }
                    })?;
                    self.pending.push((pgno, hash(&page)));
                }
                Record::Commit(c) => {
                    if c.full {
                        self.staged.clear();
                        self.anchored = true;
                    } else if self.anchored && c.page_size != self.page_size {
                        return Err(ValidateError::Mismatch(format!(
                            "page size changed from {} to {} without a full image",
                            self.page_size, c.page_size
                        )));
                    }
                    self.staged.extend(self.pending.drain(..));
                    self.db_size = c.db_size;
                    self.page_size = c.page_size;
                    self.staged.retain(|&p, _| p <= c.db_size);
                }
                Record::Closed(_) => {}
            }
        }
        // Pages of a transaction whose commit record is not written are not staged.
        self.pending.clear();
        Ok(r.position())
    }

    /// Compares the staged image with SQLite's view of the committed database.
    pub fn check(
        &mut self,
        committed: Committed,
        wal: &dyn ReadAt,
        db: &dyn ReadAt,
    ) -> Result<Outcome, ValidateError> {
        if !self.anchored {
            return Ok(Outcome::Skipped);
        }
        let mut hbuf = [0u8; WAL_HEADER_SIZE as usize];
        read_exact_or_zero(wal, &mut hbuf, 0, "WAL header")?;
        let header = WalHeader::parse(&hbuf).ok();
        let (salts, mut max_frame) = match (committed, header) {
            (Committed::Mark(m, _), Some(h)) if (m.salt1, m.salt2) == (h.salt1, h.salt2) => {
                ((m.salt1, m.salt2), m.max_frame)
            }
            (Committed::Mark(m, _), _) if m.max_frame == 0 => ((m.salt1, m.salt2), 0),
            (Committed::Pos(p), Some(h)) if (p.salt1, p.salt2) == (h.salt1, h.salt2) => {
                let frames = p.offset.saturating_sub(WAL_HEADER_SIZE) / h.frame_size();
                ((p.salt1, p.salt2), frames as u32)
            }
            // The WAL on disk is not the generation SQLite committed in: nothing to compare.
            _ => return Ok(Outcome::Skipped),
        };
        // The capture may stop short of the mark while committed frames are not complete in
        // the file (a VFS above ours buffers them); compare what it took, and insist that it
        // catches up.
        if let (Committed::Mark(_, Some(p)), Some(h)) = (committed, header) {
            let taken = if (p.salt1, p.salt2) == salts {
                (p.offset.saturating_sub(WAL_HEADER_SIZE) / h.frame_size()) as u32
            } else {
                0 // nothing of this generation yet; the previous one is in the database file
            };
            if taken < max_frame {
                self.behind += 1;
                self.behind_streak += 1;
                if self.behind_streak > MAX_BEHIND {
                    return Err(ValidateError::Mismatch(format!(
                        "the capture stayed behind SQLite's commit mark for {MAX_BEHIND} \
                         commits (at frame {taken} of {max_frame})"
                    )));
                }
                max_frame = taken;
            } else {
                self.behind_streak = 0;
            }
        }
        let page_size = match (max_frame, header) {
            (0, _) | (_, None) => self.page_size,
            (_, Some(h)) => h.page_size,
        };
        if page_size != self.page_size {
            return Err(ValidateError::Mismatch(format!(
                "page size: staged {}, WAL {}",
                self.page_size, page_size
            )));
        }
        let frame_size = FRAME_HEADER_SIZE + u64::from(page_size);
        let frame_at = |i: u32| WAL_HEADER_SIZE + u64::from(i - 1) * frame_size;
        let wal_len = wal.size().map_err(|source| ValidateError::Read {
            what: "WAL size",
            offset: 0,
            source,
        })?;
        if max_frame > 0 && wal_len < frame_at(max_frame) + frame_size {
            // Committed frames not in the file (yet): a VFS stacked above ours buffers them.
            return Ok(Outcome::Skipped);
        }
        // The frame index is kept across checks while the WAL is the same one: same header,
        // same first frame, and the last indexed frame still in place (tests write WAL files
        // with fixed salts, so salts alone do not identify one).
        let mut fh = [0u8; FRAME_HEADER_SIZE as usize];
        let mut first = [0u8; 8];
        if max_frame > 0 {
            read_exact_or_zero(wal, &mut first, frame_at(1), "WAL frame header")?;
        }
        let key = (hbuf, first);
        let mut last = [0u8; 8];
        if self.scanned > 0 && self.scanned <= max_frame {
            read_exact_or_zero(wal, &mut last, frame_at(self.scanned), "WAL frame header")?;
        }
        if self.generation != Some(key) || max_frame < self.scanned || last != self.last_indexed {
            self.generation = Some(key);
            self.scanned = 0;
            self.frames.clear();
        }
        let mut new_frames = Vec::new();
        for i in self.scanned + 1..=max_frame {
            read_exact_or_zero(wal, &mut fh, frame_at(i), "WAL frame header")?;
            let h = FrameHeader::parse(&fh);
            if (h.salt1, h.salt2) != (0, 0) && (h.salt1, h.salt2) != salts {
                // Another generation's frame where a committed one belongs: not written yet.
                return Ok(Outcome::Skipped);
            }
            new_frames.push((h.pgno, i));
            if i == max_frame {
                self.last_indexed.copy_from_slice(&fh[..8]);
            }
        }
        let mut changed: HashSet<u32> = HashSet::new();
        for (pgno, i) in new_frames {
            self.frames.insert(pgno, i);
            changed.insert(pgno);
        }
        self.scanned = max_frame;
        let db_size = if max_frame == 0 {
            let len = db.size().map_err(|source| ValidateError::Read {
                what: "database size",
                offset: 0,
                source,
            })?;
            (len / u64::from(page_size)) as u32
        } else {
            read_exact_or_zero(wal, &mut fh, frame_at(max_frame), "WAL frame header")?;
            match FrameHeader::parse(&fh).commit_size {
                0 => {
                    return Err(ValidateError::Mismatch(format!(
                        "committed frame {max_frame} of the WAL is not a commit frame"
                    )))
                }
                n => n,
            }
        };
        if db_size != self.db_size {
            return Err(ValidateError::Mismatch(format!(
                "database size: staged {} pages, SQLite sees {} pages",
                self.db_size, db_size
            )));
        }
        // Changed pages, then a rotating window.
        let mut todo: Vec<u32> = changed.into_iter().filter(|&p| p <= db_size).collect();
        let window = WINDOW_PAGES.min(db_size);
        for k in 0..window {
            todo.push((self.cursor.wrapping_add(k) % db_size.max(1)) + 1);
        }
        self.cursor = if db_size == 0 {
            0
        } else {
            (self.cursor + window) % db_size
        };
        todo.sort_unstable();
        todo.dedup();
        let lock = lock_pgno(page_size);
        let mut page = vec![0u8; page_size as usize];
        let mut pages = 0;
        for pgno in todo {
            if pgno == lock {
                continue;
            }
            match self.frames.get(&pgno) {
                Some(&i) => {
                    let off = frame_at(i) + FRAME_HEADER_SIZE;
                    read_exact_or_zero(wal, &mut page, off, "WAL page")?;
                }
                None => {
                    let off = u64::from(pgno - 1) * u64::from(page_size);
                    read_exact_or_zero(db, &mut page, off, "database page")?;
                }
            }
            let source = if self.frames.contains_key(&pgno) {
                "WAL"
            } else {
                "database file"
            };
            match self.staged.get(&pgno) {
                None => {
                    return Err(ValidateError::Mismatch(format!(
                        "page {pgno} of {db_size} is missing from the staged image"
                    )))
                }
                Some(&h) if h != hash(&page) => {
                    return Err(ValidateError::Mismatch(format!(
                        "page {pgno} of {db_size}: staged content differs from the {source} \
                         (WAL salts {:08x}/{:08x}, {max_frame} committed frames{})",
                        salts.0,
                        salts.1,
                        self.frames
                            .get(&pgno)
                            .map(|i| format!(", page in frame {i}"))
                            .unwrap_or_default()
                    )))
                }
                Some(_) => pages += 1,
            }
        }
        self.checks += 1;
        Ok(Outcome::Checked { pages })
    }
}

/// The hook the capture path calls after each capture (under the database's lock): reads
/// back what was staged, and at a commit point (`committed` is `Some`) compares. A mismatch
/// aborts the process; other failures of the validator itself are logged at error level.
pub fn after_capture(
    v: &mut Validator,
    db_path: &Path,
    meta: &MetaDir,
    segment: &crate::staging::SegmentWriter,
    committed: Option<Committed>,
    wal: &dyn ReadAt,
    db: &dyn ReadAt,
) {
    let result = v
        .consume(meta, segment.seq, segment.len())
        .and_then(|()| match committed {
            Some(c) => v.check(c, wal, db),
            None => Ok(Outcome::Skipped),
        });
    match result {
        Ok(outcome) => {
            match outcome {
                Outcome::Checked { pages } => v.pages += u64::from(pages),
                Outcome::Skipped if committed.is_some() => v.skipped += 1,
                Outcome::Skipped => {}
            }
            tracing::trace!(db = %db_path.display(), ?outcome, "validated");
        }
        Err(e @ ValidateError::Mismatch(_)) if v.record_only => {
            v.mismatch.get_or_insert(e.to_string());
        }
        Err(e @ ValidateError::Mismatch(_)) => abort_on_mismatch(db_path, &e),
        Err(e) => tracing::error!(db = %db_path.display(), error = %e, "validation could not run"),
    }
}

/// Logs what was compared since the last summary (when the last connection of the database
/// in this process closes; not at exit, where the logger may already be torn down).
pub fn log_summary(v: &mut Validator, db: &Path) {
    let (checks, pages, skipped, behind) = (
        v.checks - v.reported.0,
        v.pages - v.reported.1,
        v.skipped - v.reported.2,
        v.behind - v.reported.3,
    );
    v.reported = (v.checks, v.pages, v.skipped, v.behind);
    if checks + skipped > 0 {
        tracing::info!(db = %db.display(), checks, pages, skipped, behind, "validation summary");
    }
}

/// Logs a mismatch everywhere it can be seen, then aborts the process.
pub fn abort_on_mismatch(db: &Path, err: &ValidateError) -> ! {
    tracing::error!(db = %db.display(), error = %err, "VALIDATION FAILED: aborting");
    eprintln!(
        "litestream: VALIDATION FAILED for {}: {err} (LITESTREAM_VALIDATE=1); aborting",
        db.display()
    );
    std::process::abort()
}

#[cfg(test)]
mod tests;

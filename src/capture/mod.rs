//! Capture: turns committed WAL frames into staged pages (design: `docs/capture.md`).
//!
//! Called while the WAL cannot change under us (the WAL write lock is held, or the connection
//! holds the database in exclusive mode): reads the `-wal` from the last captured position,
//! validates salts and the checksum chain exactly as SQLite's recovery does, and appends each
//! *committed* transaction's pages to the active staging segment. Frames after the last commit
//! frame (a transaction still running, or rolled back after spilling) are never staged.
//!
//! When the captured history cannot be proven to match the database (no position yet, the WAL
//! was reset by someone else, the page size changed), the next capture stages a full image:
//! every page as SQLite sees it (latest WAL frame, else the database file).

use std::collections::HashMap;
use std::io;

use thiserror::Error;

mod scan;
use scan::{frame_before_matches, pos_at, scan_frames};

use crate::ltx::lock_pgno;
use crate::staging::{CommitRecord, DbFingerprint, SegmentWriter, StagingError, WalPos};
use crate::wal::{Checksum, WalHeader, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

/// WAL bytes read per `pread` while scanning: big enough for large transactions to stream at
/// disk speed, small enough that memory stays bounded whatever the transaction size.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Words of [`GrowthBits`] kept between captures (4096 × 64 pages of growth, 32 KiB): no
/// allocation per commit for ordinary transactions; a huge one's bits are freed, not kept.
const SCRATCH_BITS_KEEP: usize = 4096;

/// Positional reads of the `-wal` or the database file.
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// Fills `buf` from `offset`; bytes past the end of the file read as zeros (as SQLite reads a
/// page beyond the end of the database file).
fn read_full_or_zero(src: &dyn ReadAt, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = src.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

/// The committed end of the WAL as SQLite's wal-index header records it (read under the WAL
/// write lock): `max_frame` frames of the generation with these salts are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIndexMark {
    pub max_frame: u32,
    pub salt1: u32,
    pub salt2: u32,
}

impl WalIndexMark {
    /// Parses the first copy of the 48-byte `WalIndexHdr` (native byte order; the salts are
    /// stored as the WAL header's big-endian bytes).
    pub fn parse(hdr: &[u8; 48]) -> Option<WalIndexMark> {
        let is_init = hdr[12] != 0;
        if !is_init {
            return None;
        }
        let ne = |i: usize| u32::from_ne_bytes(hdr[i..i + 4].try_into().expect("4 bytes"));
        let be = |i: usize| u32::from_be_bytes(hdr[i..i + 4].try_into().expect("4 bytes"));
        Some(WalIndexMark {
            max_frame: ne(16),
            salt1: be(32),
            salt2: be(36),
        })
    }
}

/// Where the capture stands, when a commit may be recorded lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyBase {
    pub salt1: u32,
    pub salt2: u32,
    /// Frames of this generation already captured.
    pub captured_frames: u32,
    /// Bytes per frame (header + page).
    pub frame_bytes: u64,
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("reading the WAL at byte {offset}: {source}")]
    WalRead { offset: u64, source: io::Error },
    #[error("reading database page {pgno}: {source}")]
    DbRead { pgno: u32, source: io::Error },
    #[error(transparent)]
    Staging(#[from] StagingError),
}

/// What the capture knows about the continuity of its history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureState {
    /// Where the captured stream ends in the current WAL generation.
    pub pos: Option<WalPos>,
    /// The WAL generation at `pos` ended cleanly (the database file held everything captured),
    /// so a new generation may be continued from its first frame.
    pub closed: Option<DbFingerprint>,
    /// The next capture must stage every page; the reason is logged once.
    pub need_full: Option<String>,
    /// Database size in pages after the last captured commit.
    pub db_size: u32,
    pub page_size: u32,
    /// Reused between captures so a commit allocates nothing; not part of the state.
    pub scratch: Scratch,
}

/// Per-capture working memory kept between commits, and the WAL header last read.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// The `-wal` header last read from the capture's descriptor. While the wal-index mark
    /// carries its salts, it is still the header: salts change at every WAL restart (salt-2
    /// is random), so the commit path need not read the header or stat the file again.
    wal_header: Option<WalHeader>,
    frames: Vec<u8>,
    growth: Vec<u8>,
    in_txn: GrowthBits,
}

/// The pages a transaction wrote above the database's size at its start (`base`): one bit
/// each, so a transaction that grows the database by 1 GiB of 4 KiB pages needs 32 KiB.
/// Pages the database grew by without a frame are read from the database file.
#[derive(Debug, Clone, Default)]
struct GrowthBits {
    base: u32,
    words: Vec<u64>,
}

impl GrowthBits {
    fn reset(&mut self, base: u32) {
        self.base = base;
        self.words.clear();
        if self.words.capacity() > SCRATCH_BITS_KEEP {
            self.words = Vec::new();
        }
    }

    fn insert(&mut self, pgno: u32) {
        let Some(i) = pgno.checked_sub(self.base.saturating_add(1)) else {
            return;
        };
        let (w, bit) = ((i / 64) as usize, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << bit;
    }

    /// Whether the transaction wrote `pgno`, which must be above `base`.
    fn contains(&self, pgno: u32) -> bool {
        let i = pgno - self.base - 1;
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Scratch memory never makes two states differ.
impl PartialEq for Scratch {
    fn eq(&self, _: &Scratch) -> bool {
        true
    }
}
impl Eq for Scratch {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Captured {
    pub txns: usize,
    pub pages: usize,
    pub full: bool,
}

impl CaptureState {
    /// Requests a full image at the next capture (keeps the first reason given).
    pub fn require_full(&mut self, reason: impl Into<String>) {
        if self.need_full.is_none() {
            self.need_full = Some(reason.into());
        }
    }

    /// The WAL generation being followed ended without this process closing it (the WAL was
    /// emptied, deleted or overwritten by someone else): the database file may hold anything
    /// now, so the next capture stages a full image.
    pub fn lost_generation(&mut self, reason: &str) {
        if self.pos.is_some() && self.closed.is_none() {
            self.require_full(reason);
        }
    }

    /// Captures every committed transaction in `wal` after the current position.
    /// `allow_full`: whether a full image may be staged now (only at a commit point of a
    /// connection, where the database file is stable); otherwise it is deferred.
    /// `committed`: SQLite's own word on which frames are committed, from the wal-index
    /// header (`None` where it cannot be read: then the checksum chain decides).
    pub fn capture(
        &mut self,
        wal: &dyn ReadAt,
        db: &dyn ReadAt,
        out: &mut SegmentWriter,
        now_ms: i64,
        allow_full: bool,
        committed: Option<WalIndexMark>,
    ) -> Result<Captured, CaptureError> {
        let (header, wal_size, limit) = match self.known_wal_end(committed) {
            // The WAL write lock is held and SQLite wrote these frames: the file reaches the
            // mark, and the header is the one read before (same salts).
            Some((header, end)) => (header, end, Some(end)),
            None => {
                let wal_size = wal
                    .size()
                    .map_err(|source| CaptureError::WalRead { offset: 0, source })?;
                if wal_size < WAL_HEADER_SIZE {
                    self.scratch.wal_header = None;
                    self.lost_generation("the WAL was emptied outside this process's connections");
                    return Ok(Captured::default());
                }
                let mut hbuf = [0u8; 32];
                read_full_or_zero(wal, &mut hbuf, 0)
                    .map_err(|source| CaptureError::WalRead { offset: 0, source })?;
                let Ok(header) = WalHeader::parse(&hbuf) else {
                    self.scratch.wal_header = None;
                    self.lost_generation(
                        "the WAL header was overwritten outside this process's connections",
                    );
                    return Ok(Captured::default());
                };
                self.scratch.wal_header = Some(header);
                // The mark applies only to this WAL generation. A mark of another generation
                // with no frame says SQLite committed nothing in this file yet: its frames (even
                // a valid checksum chain ending in a commit frame) belong to a commit that
                // failed, e.g. on an I/O error after the frames were written, and must not be
                // staged.
                let limit = match committed {
                    Some(m) if m.salt1 == header.salt1 && m.salt2 == header.salt2 => Some(
                        (WAL_HEADER_SIZE + u64::from(m.max_frame) * header.frame_size())
                            .min(wal_size),
                    ),
                    Some(m) if m.max_frame == 0 => Some(WAL_HEADER_SIZE),
                    _ => None,
                };
                (header, wal_size, limit)
            }
        };
        if self.need_full.is_none() && self.page_size != 0 && header.page_size != self.page_size {
            self.require_full(format!(
                "page size changed from {} to {}",
                self.page_size, header.page_size
            ));
        }
        let same_generation =
            matches!(self.pos, Some(p) if p.salt1 == header.salt1 && p.salt2 == header.salt2);
        if self.need_full.is_none() {
            match self.pos {
                None => self.require_full("no replicated position yet"),
                Some(p) if same_generation && p.offset > wal_size => {
                    self.require_full("wal truncated by another process")
                }
                Some(_) if !same_generation && self.closed.is_none() => {
                    self.require_full("wal header salt reset by another process")
                }
                Some(p) if same_generation && !frame_before_matches(&header, wal, &p)? => self
                    .require_full(
                        "the WAL was rewritten under the same salts (replaced by a copy)",
                    ),
                Some(_) => {}
            }
        }
        if self.need_full.is_some() {
            if !allow_full {
                return Ok(Captured::default());
            }
            return self.capture_full(&header, wal, wal_size, limit, db, out, now_ms);
        }
        let (start, checksum) = match self.pos {
            Some(p) if same_generation => (p.offset, p.checksum),
            _ => (WAL_HEADER_SIZE, header.checksum),
        };
        let result = self.capture_incremental(
            &header, wal, wal_size, limit, start, checksum, db, out, now_ms,
        );
        if result.is_err() {
            out.discard_partial()?;
        }
        result
    }

    /// With a wal-index mark of the WAL generation whose header was read last (and not behind
    /// the captured position): that header and the committed end of the WAL. The commit path's
    /// fast case: no `stat`, no header read.
    pub fn known_wal_end(&self, committed: Option<WalIndexMark>) -> Option<(WalHeader, u64)> {
        let m = committed?;
        let h = self.scratch.wal_header?;
        if h.salt1 != m.salt1 || h.salt2 != m.salt2 {
            return None;
        }
        let end = WAL_HEADER_SIZE + u64::from(m.max_frame) * h.frame_size();
        match self.pos {
            Some(p) if p.salt1 == h.salt1 && p.salt2 == h.salt2 && p.offset > end => None,
            _ => Some((h, end)),
        }
    }

    /// Where a commit may be recorded lazily (see [`crate::pending`]): the position lies in the
    /// WAL generation whose header was read last, and no full image is due.
    pub fn lazy_base(&self) -> Option<LazyBase> {
        if self.need_full.is_some() {
            return None;
        }
        let h = self.scratch.wal_header?;
        let p = self.pos?;
        if (p.salt1, p.salt2) != (h.salt1, h.salt2) {
            return None;
        }
        let frames = p.offset.checked_sub(WAL_HEADER_SIZE)? / h.frame_size();
        Some(LazyBase {
            salt1: h.salt1,
            salt2: h.salt2,
            captured_frames: u32::try_from(frames).ok()?,
            frame_bytes: h.frame_size(),
        })
    }

    /// Forgets the WAL header read last (the capture's `-wal` descriptor was replaced).
    pub fn forget_wal_header(&mut self) {
        self.scratch.wal_header = None;
    }

    #[allow(clippy::too_many_arguments)]
    fn capture_incremental(
        &mut self,
        header: &WalHeader,
        wal: &dyn ReadAt,
        wal_size: u64,
        limit: Option<u64>,
        start: u64,
        checksum: Checksum,
        db: &dyn ReadAt,
        out: &mut SegmentWriter,
        now_ms: i64,
    ) -> Result<Captured, CaptureError> {
        let page_size = header.page_size;
        let lock = lock_pgno(page_size);
        let mut result = Captured::default();
        let Scratch {
            frames,
            growth,
            in_txn,
            ..
        } = &mut self.scratch;
        let mut db_size = self.db_size;
        in_txn.reset(db_size);
        // Page records of the transaction being read.
        let mut txn_pages = 0;
        let mut last_commit: Option<(u64, Checksum)> = None;
        scan_frames(
            header,
            wal,
            wal_size,
            limit,
            start,
            checksum,
            frames,
            |fh, page, end, ck| {
                out.write_page(fh.pgno, page)?;
                in_txn.insert(fh.pgno);
                txn_pages += 1;
                if fh.commit_size == 0 {
                    return Ok(());
                }
                // Pages the database grew by without a frame in this transaction.
                for pgno in (db_size + 1)..=fh.commit_size {
                    if pgno != lock && !in_txn.contains(pgno) {
                        growth.resize(page_size as usize, 0);
                        read_full_or_zero(db, growth, u64::from(pgno - 1) * u64::from(page_size))
                            .map_err(|source| CaptureError::DbRead { pgno, source })?;
                        out.write_page(pgno, growth)?;
                        result.pages += 1;
                    }
                }
                result.pages += txn_pages;
                txn_pages = 0;
                result.txns += 1;
                db_size = fh.commit_size;
                let wal_pos = pos_at(header, end, ck);
                out.write_commit(&CommitRecord {
                    db_size,
                    page_size,
                    timestamp_ms: now_ms,
                    full: false,
                    wal: wal_pos,
                })?;
                in_txn.reset(db_size);
                last_commit = Some((end, ck));
                Ok(())
            },
        )?;
        in_txn.reset(db_size);
        // Pages of a transaction without its commit frame are not committed: drop them.
        out.discard_partial()?;
        if let Some((end, ck)) = last_commit {
            self.pos = Some(pos_at(header, end, ck));
            self.closed = None;
            self.db_size = db_size;
            self.page_size = page_size;
        }
        Ok(result)
    }

    /// Stages every page of the database as of the last commit in the WAL.
    #[allow(clippy::too_many_arguments)]
    fn capture_full(
        &mut self,
        header: &WalHeader,
        wal: &dyn ReadAt,
        wal_size: u64,
        limit: Option<u64>,
        db: &dyn ReadAt,
        out: &mut SegmentWriter,
        now_ms: i64,
    ) -> Result<Captured, CaptureError> {
        let page_size = header.page_size;
        // Latest committed frame of each page, and where the last commit ends.
        let mut latest: HashMap<u32, u64> = HashMap::new();
        let mut pending: Vec<(u32, u64)> = Vec::new();
        let mut last: Option<(u64, Checksum, u32)> = None;
        let frame_size = header.frame_size();
        scan_frames(
            header,
            wal,
            wal_size,
            limit,
            WAL_HEADER_SIZE,
            header.checksum,
            &mut Vec::new(),
            |fh, _page, end, ck| {
                pending.push((fh.pgno, end - frame_size));
                if fh.commit_size != 0 {
                    latest.extend(pending.drain(..));
                    last = Some((end, ck, fh.commit_size));
                }
                Ok(())
            },
        )?;
        let Some((end, ck, db_size)) = last else {
            // No committed frame in this WAL: nothing to anchor a full image to yet.
            return Ok(Captured::default());
        };
        let reason = self.need_full.clone().unwrap_or_default();
        if self.pos.is_none() {
            tracing::info!(reason = %reason, pages = db_size, "staging a full database image");
        } else {
            tracing::warn!(reason = %reason, pages = db_size, "next replica file holds every page");
        }
        let lock = lock_pgno(page_size);
        let mut page = vec![0u8; page_size as usize];
        let mut pages = 0;
        let staged: Result<(), CaptureError> = (|| {
            for pgno in 1..=db_size {
                if pgno == lock {
                    continue;
                }
                match latest.get(&pgno) {
                    Some(&frame_off) => {
                        let off = frame_off + FRAME_HEADER_SIZE;
                        read_full_or_zero(wal, &mut page, off).map_err(|source| {
                            CaptureError::WalRead {
                                offset: off,
                                source,
                            }
                        })?;
                    }
                    None => {
                        read_full_or_zero(db, &mut page, u64::from(pgno - 1) * u64::from(page_size))
                            .map_err(|source| CaptureError::DbRead { pgno, source })?
                    }
                }
                out.write_page(pgno, &page)?;
                pages += 1;
            }
            out.write_commit(&CommitRecord {
                db_size,
                page_size,
                timestamp_ms: now_ms,
                full: true,
                wal: pos_at(header, end, ck),
            })?;
            Ok(())
        })();
        if let Err(e) = staged {
            out.discard_partial()?;
            return Err(e);
        }
        self.pos = Some(pos_at(header, end, ck));
        self.closed = None;
        self.need_full = None;
        self.db_size = db_size;
        self.page_size = page_size;
        Ok(Captured {
            txns: 1,
            pages,
            full: true,
        })
    }
}

#[cfg(test)]
mod tests;

//! Streaming LTX reader (spec §3, §9). Reads through a `BufReader` of its own; holds one page of
//! compressed data and the list of frames read (for the index check), never the whole file.
use std::io::{self, BufReader, Read};

use super::checksum::DatabaseChecksum;
use super::encoder::{END_MARKER, PAGE_FLAG_SIZE};
use super::index::UvarintParser;
use super::lz4frame::{decode_frame, FrameError};
use super::{Crc64, Header, LtxError, Trailer, CHECKSUM_FLAG, HEADER_SIZE, TRAILER_SIZE};

pub use super::index::PageIndexEntry;

/// Longest compressed page we accept: any real LZ4 block of a page is far smaller; the bound keeps
/// a corrupt length field from allocating gigabytes.
fn max_block_len(page_size: u32) -> usize {
    page_size as usize * 2 + 64
}

pub struct Decoder<R: Read> {
    r: BufReader<R>,
    header: Header,
    hash: Crc64,
    /// Bytes consumed so far.
    pos: u64,
    ended: bool,
    prev_pgno: u32,
    /// Only tests change it (to exercise lock-page rules on small files).
    pub(super) lock_pgno: u32,
    frames: Vec<PageIndexEntry>,
    scratch: Vec<u8>,
    /// Rolling checksum, kept only for checksummed snapshots (flags 0, min TXID 1).
    db_checksum: Option<DatabaseChecksum>,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Self, LtxError> {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut buf = [0u8; HEADER_SIZE];
        read_full(&mut r, &mut buf, 0, "header")?;
        let header = Header::decode(&buf)?;
        header.validate()?;
        let mut hash = Crc64::new();
        hash.update(&buf);
        let db_checksum = (header.is_snapshot() && !header.no_checksum())
            .then(|| DatabaseChecksum::new(header.page_size));
        Ok(Decoder {
            r,
            header,
            hash,
            pos: HEADER_SIZE as u64,
            ended: false,
            prev_pgno: 0,
            lock_pgno: header.lock_pgno(),
            frames: Vec::new(),
            scratch: Vec::new(),
            db_checksum,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), LtxError> {
        read_full(&mut self.r, buf, self.pos, what)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Decodes the next page into `buf` (`buf.len()` == page size) and returns its pgno, or
    /// `None` at the end marker. Both page encodings are accepted (spec §3.2). After an error the
    /// decoder's position is undefined: drop it.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>, LtxError> {
        if self.ended {
            return Ok(None);
        }
        let page_size = self.header.page_size;
        if buf.len() != page_size as usize {
            return Err(LtxError::InvalidFrame {
                offset: self.pos,
                reason: format!(
                    "caller's buffer is {} bytes, the page size is {page_size}",
                    buf.len()
                ),
            });
        }
        let start = self.pos;
        let mut ph = [0u8; 6];
        self.read(&mut ph, "page header")?;
        self.hash.update(&ph);
        if ph == END_MARKER {
            self.ended = true;
            return Ok(None);
        }
        let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        let invalid = |reason: String| {
            Err(LtxError::InvalidFrame {
                offset: start,
                reason,
            })
        };
        if pgno == 0 {
            return invalid(format!("page number 0 with page flags {flags:#06x}"));
        }
        if flags & !PAGE_FLAG_SIZE != 0 {
            return invalid(format!("page {pgno} has unknown page flags {flags:#06x}"));
        }
        if pgno <= self.prev_pgno {
            return Err(LtxError::NonSequentialPage {
                prev: self.prev_pgno,
                pgno,
            });
        }
        let bad = |reason: String| Err(LtxError::BadPage { pgno, reason });
        if pgno > self.header.commit {
            return bad(format!(
                "beyond the header's commit of {} pages (frame at byte {start})",
                self.header.commit
            ));
        }
        if pgno == self.lock_pgno {
            return bad(format!(
                "is the lock page, which is never stored (frame at byte {start})"
            ));
        }

        if flags & PAGE_FLAG_SIZE != 0 {
            let mut lb = [0u8; 4];
            self.read(&mut lb, "page length")?;
            self.hash.update(&lb);
            let len = u32::from_be_bytes(lb) as usize;
            if len > max_block_len(page_size) {
                return invalid(format!(
                    "page {pgno}: compressed length {len} is impossible for a {page_size}-byte page"
                ));
            }
            let mut data = std::mem::take(&mut self.scratch);
            data.resize(len, 0);
            let read = self.read(&mut data, "compressed page");
            let result = read.and_then(|()| {
                let reason = match lz4_flex::block::decompress_into(&data, buf) {
                    Ok(n) if n == buf.len() => return Ok(()),
                    Ok(n) => format!(
                        "page {pgno}: LZ4 block decompresses to {n} bytes, want {page_size}"
                    ),
                    Err(e) => format!("page {pgno}: corrupt LZ4 block: {e}"),
                };
                Err(LtxError::InvalidFrame {
                    offset: start,
                    reason,
                })
            });
            self.scratch = data;
            result?;
        } else {
            // Legacy encoding (ltx <= v0.5.1): a whole LZ4 frame, no length field.
            let frame_at = self.pos;
            let n = decode_frame(&mut self.r, buf, &mut self.scratch).map_err(|e| match e {
                FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    LtxError::Truncated(format!(
                        "LZ4 frame of page {pgno} at byte {frame_at}: the file ends early"
                    ))
                }
                FrameError::Io(e) => LtxError::Io(e),
                FrameError::Invalid { at, reason } => LtxError::InvalidFrame {
                    offset: frame_at + at,
                    reason: format!("page {pgno}: {reason}"),
                },
            })?;
            self.pos += n;
        }
        self.hash.update(buf);
        if let Some(c) = &mut self.db_checksum {
            c.toggle_page(pgno, buf);
        }
        self.frames.push(PageIndexEntry {
            pgno,
            offset: start,
            size: self.pos - start,
        });
        self.prev_pgno = pgno;
        Ok(Some(pgno))
    }

    fn index_byte(&mut self) -> Result<u8, LtxError> {
        let mut b = [0u8; 1];
        self.read(&mut b, "page index")?;
        self.hash.update(&b);
        Ok(b[0])
    }

    fn index_uvarint(&mut self) -> Result<u64, LtxError> {
        let mut p = UvarintParser::default();
        loop {
            let at = self.pos;
            let b = self.index_byte()?;
            match p.push(b) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(LtxError::BadIndex(format!("{e} at byte {at}"))),
            }
        }
    }

    /// Reads the page index and trailer, verifies the file checksum, and checks that nothing
    /// follows. Pages not yet read are decoded (and checked) first, so `Decoder::new(r)?.finish()`
    /// verifies a whole file. Returns the index, which matches the frames read.
    pub fn finish(mut self) -> Result<(Trailer, Vec<PageIndexEntry>), LtxError> {
        if !self.ended {
            let mut page = vec![0u8; self.header.page_size as usize];
            while self.next_page(&mut page)?.is_some() {}
        }
        if self.header.is_snapshot() {
            self.check_snapshot_complete()?;
        }

        let index_start = self.pos;
        let mut i = 0usize;
        loop {
            let at = self.pos;
            let pgno = self.index_uvarint()?;
            if pgno == 0 {
                break;
            }
            let offset = self.index_uvarint()?;
            let size = self.index_uvarint()?;
            let got = (pgno, offset, size);
            match self.frames.get(i) {
                Some(f) if (u64::from(f.pgno), f.offset, f.size) == got => {}
                Some(f) => {
                    return Err(LtxError::BadIndex(format!(
                        "entry {i} at byte {at} says (pgno {pgno}, offset {offset}, size {size}) \
                         but the frame read was (pgno {}, offset {}, size {})",
                        f.pgno, f.offset, f.size
                    )))
                }
                None => {
                    return Err(LtxError::BadIndex(format!(
                    "entry {i} at byte {at} (pgno {pgno}) has no page frame; the file has {} pages",
                    self.frames.len()
                )))
                }
            }
            i += 1;
        }
        if i != self.frames.len() {
            return Err(LtxError::BadIndex(format!(
                "index ending at byte {} lists {i} pages, the file has {}",
                self.pos,
                self.frames.len()
            )));
        }
        let index_len = self.pos - index_start;
        let mut lb = [0u8; 8];
        let len_at = self.pos;
        self.read(&mut lb, "page index length")?;
        self.hash.update(&lb);
        let stored_len = u64::from_be_bytes(lb);
        if stored_len != index_len {
            return Err(LtxError::BadIndex(format!(
                "length field at byte {len_at} says {stored_len}, the index is {index_len} bytes"
            )));
        }

        let trailer_at = self.pos;
        let mut tb = [0u8; TRAILER_SIZE];
        self.read(&mut tb, "trailer")?;
        self.hash.update(&tb[..8]);
        let trailer = Trailer::decode(&tb);
        if trailer.file_checksum & CHECKSUM_FLAG == 0 {
            return Err(LtxError::BadTrailer(format!(
                "file checksum {:016x} at byte {} lacks bit 63",
                trailer.file_checksum,
                trailer_at + 8
            )));
        }
        let computed = CHECKSUM_FLAG | self.hash.finish();
        if computed != trailer.file_checksum {
            return Err(LtxError::ChecksumMismatch {
                stored: trailer.file_checksum,
                computed,
            });
        }
        if let Some(c) = self.db_checksum {
            if c.value() != trailer.post_apply_checksum {
                return Err(LtxError::BadTrailer(format!(
                    "post-apply checksum {:016x} differs from the database checksum {:016x} of the \
                     snapshot's pages",
                    trailer.post_apply_checksum,
                    c.value()
                )));
            }
        }
        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(LtxError::BadTrailer(format!(
                        "unexpected data after the trailer at byte {}",
                        self.pos
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((trailer, self.frames))
    }

    /// A snapshot (min TXID 1) holds every page 1..=commit except the lock page (spec §3.2).
    fn check_snapshot_complete(&self) -> Result<(), LtxError> {
        let commit = self.header.commit;
        let want = commit - u32::from(self.lock_pgno <= commit);
        if self.frames.len() as u64 == u64::from(want) {
            return Ok(());
        }
        let mut expected = 1u32;
        for f in &self.frames {
            if expected == self.lock_pgno {
                expected = expected.saturating_add(1);
            }
            if f.pgno != expected {
                break;
            }
            expected = expected.saturating_add(1);
        }
        if expected == self.lock_pgno {
            expected = expected.saturating_add(1);
        }
        Err(LtxError::BadPage {
            pgno: expected,
            reason: format!(
                "missing from a snapshot (min TXID 1), which must hold every page 1..={commit}"
            ),
        })
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8], at: u64, what: &str) -> Result<(), LtxError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LtxError::Truncated(format!(
                "{what} at byte {at}: the file ends early (incomplete upload or copy?)"
            ))
        } else {
            LtxError::Io(e)
        }
    })
}

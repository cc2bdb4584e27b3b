//! Streaming LTX writer (spec §3, §8). Holds one compression buffer and the page index entries;
//! page data goes straight to the writer, so files of any size stream.
use std::io::Write;

use super::index::{put_uvarint, UvarintParser, MAX_UVARINT_LEN};
use super::{Crc64, Header, LtxError, Trailer, CHECKSUM_FLAG, FLAG_NO_CHECKSUM, HEADER_SIZE};

/// Page header (pgno u32, flags u16) plus the u32 compressed length.
pub(crate) const FRAME_HEADER_SIZE: usize = 10;
/// Page flag: a u32 compressed length follows the page header (the only encoding we write).
pub(crate) const PAGE_FLAG_SIZE: u16 = 0x0001;
/// The end marker: a page header of zeros, with no length field.
pub(crate) const END_MARKER: [u8; 6] = [0; 6];

pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hash: Crc64,
    /// Bytes written so far (= offset of the next frame).
    offset: u64,
    prev_pgno: u32,
    /// Only tests change it (to exercise lock-page rules on small files).
    pub(super) lock_pgno: u32,
    /// The page index so far, compact: per page `uvarint(pgno − previous pgno)
    /// uvarint(frame size)` (about 3 bytes, instead of the 8–10 of a spec §3.3 entry: frames
    /// are contiguous from the header on, so each offset is the sum of the sizes before it).
    /// `finish` expands it into the spec's entries while writing them.
    index: Vec<u8>,
    pages: usize,
    /// Page header, length field and compressed data of the current frame; reused.
    frame: Vec<u8>,
    /// Set after a failed write: the output is incomplete and must be discarded.
    failed: bool,
    /// Every page from this one through commit must be written (0: no such rule). 1 for a
    /// snapshot; see [`Encoder::require_complete_from`].
    complete_from: u32,
}

impl<W: Write> Encoder<W> {
    /// Validates the header and writes it. The header's flags must be `FLAG_NO_CHECKSUM` and its
    /// commit at least 1 (spec §3.6, §3.8: anything else breaks `litestream restore`).
    pub fn new(mut w: W, header: &Header) -> Result<Self, LtxError> {
        header.validate()?;
        if header.flags != FLAG_NO_CHECKSUM {
            return Err(LtxError::InvalidHeader(format!(
                "flags {:#x}: the encoder writes only flag {FLAG_NO_CHECKSUM:#x} (no checksum) files, \
                 the only kind Litestream 0.5 restores",
                header.flags
            )));
        }
        if header.commit == 0 {
            return Err(LtxError::InvalidHeader(
                "commit 0: an LTX file must describe a database of at least one page".into(),
            ));
        }
        let bytes = header.encode();
        w.write_all(&bytes)?;
        let mut hash = Crc64::new();
        hash.update(&bytes);
        let max = lz4_flex::block::get_maximum_output_size(header.page_size as usize);
        Ok(Encoder {
            w,
            header: *header,
            hash,
            offset: HEADER_SIZE as u64,
            prev_pgno: 0,
            lock_pgno: header.lock_pgno(),
            index: Vec::new(),
            pages: 0,
            frame: vec![0u8; FRAME_HEADER_SIZE + max],
            failed: false,
            complete_from: u32::from(header.is_snapshot()),
        })
    }

    #[cfg(test)]
    /// The underlying writer (everything counted by `bytes_written` has been handed to it).
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Requires every page from `first` through the header's commit (but the lock page), in
    /// order: a file that announces a full image holds every page (`first` = 1), and an
    /// incremental file holds every page its database grew by (`first` = one past the
    /// previous commit). `finish` fails otherwise, so such a file is never stored with a hole
    /// a restore would trip over. Call before the first page.
    pub fn require_complete_from(&mut self, first: u32) {
        self.complete_from = if self.header.is_snapshot() { 1 } else { first };
    }

    /// The next page a complete range needs: after `prev`, not below `complete_from`, never
    /// the lock page.
    fn next_required_pgno(&self) -> u32 {
        let next = self.prev_pgno.saturating_add(1).max(self.complete_from);
        if next == self.lock_pgno {
            next.saturating_add(1)
        } else {
            next
        }
    }

    fn check_usable(&self) -> Result<(), LtxError> {
        if self.failed {
            return Err(LtxError::Io(std::io::Error::other(
                "an earlier write to this LTX file failed; discard the partial file and start over",
            )));
        }
        Ok(())
    }

    /// Appends one page: strictly ascending pgno, never the lock page, `data.len() == page size`.
    /// In a snapshot (min TXID 1) pages must be exactly 1, 2, 3, … (skipping the lock page).
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), LtxError> {
        self.check_usable()?;
        let bad = |reason: String| Err(LtxError::BadPage { pgno, reason });
        if pgno == 0 {
            return bad("page numbers start at 1".into());
        }
        if pgno <= self.prev_pgno {
            return Err(LtxError::NonSequentialPage {
                prev: self.prev_pgno,
                pgno,
            });
        }
        if pgno > self.header.commit {
            return bad(format!(
                "beyond the header's commit of {} pages; raise commit or drop the page",
                self.header.commit
            ));
        }
        if pgno == self.lock_pgno {
            return bad("is the lock page (byte offset 1 GiB), which is never stored".into());
        }
        if self.complete_from != 0 && pgno >= self.complete_from {
            // A page of the required range was skipped.
            if pgno != self.next_required_pgno() {
                return Err(LtxError::NonSequentialPage {
                    prev: self.prev_pgno,
                    pgno,
                });
            }
        }
        if data.len() != self.header.page_size as usize {
            return bad(format!(
                "data is {} bytes, the page size is {}",
                data.len(),
                self.header.page_size
            ));
        }

        let n = lz4_flex::block::compress_into(data, &mut self.frame[FRAME_HEADER_SIZE..])
            .map_err(|e| LtxError::BadPage {
                pgno,
                reason: format!("LZ4 compression failed: {e}"),
            })?;
        let len = u32::try_from(n).map_err(|_| LtxError::BadPage {
            pgno,
            reason: format!("compressed size {n} does not fit in u32"),
        })?;
        self.frame[0..4].copy_from_slice(&pgno.to_be_bytes());
        self.frame[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        self.frame[6..10].copy_from_slice(&len.to_be_bytes());
        let size = FRAME_HEADER_SIZE + n;
        if let Err(e) = self.w.write_all(&self.frame[..size]) {
            self.failed = true;
            return Err(e.into());
        }
        // The checksum covers the page header and length, then the *uncompressed* page.
        self.hash.update(&self.frame[..FRAME_HEADER_SIZE]);
        self.hash.update(data);
        put_uvarint(&mut self.index, u64::from(pgno - self.prev_pgno));
        put_uvarint(&mut self.index, size as u64);
        self.pages += 1;
        self.offset += size as u64;
        self.prev_pgno = pgno;
        Ok(())
    }

    /// Writes end marker, page index and trailer, flushes, and returns the writer and the trailer.
    /// A snapshot, or a file with [`Encoder::require_complete_from`], must have received every
    /// page of its range.
    pub fn finish(mut self) -> Result<(W, Trailer), LtxError> {
        self.check_usable()?;
        if self.complete_from != 0 && self.prev_pgno < self.header.commit {
            let missing = self.next_required_pgno();
            if missing <= self.header.commit {
                return Err(LtxError::BadPage {
                    pgno: missing,
                    reason: format!(
                        "missing: this file must hold every page {}..={}",
                        self.complete_from, self.header.commit
                    ),
                });
            }
        }
        // End marker, index entries, terminator, u64 length of entries + terminator, then the
        // trailer. The entries are expanded from the compact index in small blocks.
        self.hash.update(&END_MARKER);
        self.w.write_all(&END_MARKER)?;
        let compact = std::mem::take(&mut self.index);
        let mut block = Vec::with_capacity(INDEX_BLOCK_BYTES + 3 * MAX_UVARINT_LEN);
        let mut index_len = 0u64;
        let (mut pgno, mut offset) = (0u64, HEADER_SIZE as u64);
        let mut values = compact_values(&compact);
        #[allow(clippy::while_let_loop)]
        while let (Some(delta), Some(size)) = (values.next(), values.next()) {
            pgno += delta;
            put_uvarint(&mut block, pgno);
            put_uvarint(&mut block, offset);
            put_uvarint(&mut block, size);
            offset += size;
            if block.len() >= INDEX_BLOCK_BYTES {
                self.write_index_block(&mut block, &mut index_len)?;
            }
        }
        put_uvarint(&mut block, 0);
        self.write_index_block(&mut block, &mut index_len)?;
        drop(values);
        drop(compact);
        let post_apply_checksum = 0u64;
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&index_len.to_be_bytes());
        lengths[8..].copy_from_slice(&post_apply_checksum.to_be_bytes());
        self.hash.update(&lengths);
        self.w.write_all(&lengths)?;
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: CHECKSUM_FLAG | self.hash.finish(),
        };
        self.w.write_all(&trailer.file_checksum.to_be_bytes())?;
        self.w.flush()?;
        tracing::trace!(
            min_txid = self.header.min_txid,
            max_txid = self.header.max_txid,
            pages = self.pages,
            bytes = self.offset + (END_MARKER.len() + lengths.len() + 8) as u64 + index_len,
            "ltx file encoded"
        );
        Ok((self.w, trailer))
    }
}

impl<W: Write> Encoder<W> {
    fn write_index_block(
        &mut self,
        block: &mut Vec<u8>,
        written: &mut u64,
    ) -> Result<(), LtxError> {
        self.hash.update(block);
        self.w.write_all(block)?;
        *written += block.len() as u64;
        block.clear();
        Ok(())
    }
}

/// Bytes of expanded index entries written at a time by `finish`.
const INDEX_BLOCK_BYTES: usize = 64 * 1024;

/// The values of the compact index, in order (it was written by `put_uvarint`, so it parses).
fn compact_values(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut p = UvarintParser::default();
    bytes.iter().filter_map(move |&b| p.push(b).ok().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l0(page_size: u32, commit: u32, min: u64) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid: min,
            max_txid: min,
            timestamp_ms: 1_700_000_000_000,
            ..Header::default()
        }
    }

    #[test]
    fn rejects_unusable_headers() {
        let no_flag = Header {
            flags: 0,
            min_txid: 1,
            ..l0(4096, 1, 1)
        };
        assert!(matches!(
            Encoder::new(Vec::new(), &no_flag),
            Err(LtxError::InvalidHeader(_))
        ));
        assert!(matches!(
            Encoder::new(Vec::new(), &l0(4096, 0, 2)),
            Err(LtxError::InvalidHeader(_))
        ));
        assert!(matches!(
            Encoder::new(Vec::new(), &l0(1000, 1, 2)),
            Err(LtxError::InvalidHeader(_))
        ));
    }

    #[test]
    fn page_rules() {
        let page = vec![0u8; 512];
        let mut e = Encoder::new(Vec::new(), &l0(512, 10, 2)).unwrap();
        assert!(matches!(
            e.write_page(0, &page),
            Err(LtxError::BadPage { pgno: 0, .. })
        ));
        e.write_page(3, &page).unwrap();
        assert!(matches!(
            e.write_page(3, &page),
            Err(LtxError::NonSequentialPage { prev: 3, pgno: 3 })
        ));
        assert!(matches!(
            e.write_page(2, &page),
            Err(LtxError::NonSequentialPage { prev: 3, pgno: 2 })
        ));
        assert!(matches!(
            e.write_page(11, &page),
            Err(LtxError::BadPage { pgno: 11, .. })
        ));
        assert!(matches!(
            e.write_page(5, &page[..100]),
            Err(LtxError::BadPage { pgno: 5, .. })
        ));
        e.write_page(10, &page).unwrap();
        let (out, t) = e.finish().unwrap();
        assert_eq!(&out[out.len() - 8..], &t.file_checksum.to_be_bytes());
        assert_ne!(t.file_checksum & CHECKSUM_FLAG, 0);
    }

    #[test]
    fn never_writes_the_lock_page() {
        let ps = 65536;
        let lock = super::super::lock_pgno(ps);
        let page = vec![1u8; ps as usize];
        let mut e = Encoder::new(Vec::new(), &l0(ps, lock + 1, 2)).unwrap();
        assert!(matches!(
            e.write_page(lock, &page),
            Err(LtxError::BadPage { .. })
        ));
        e.write_page(lock + 1, &page).unwrap();
    }

    #[test]
    fn a_complete_range_must_have_every_page() {
        let page = vec![0u8; 512];
        // An incremental file (min TXID 4) whose database grew from 3 to 6 pages: 4..=6 needed.
        let mut e = Encoder::new(Vec::new(), &l0(512, 6, 4)).unwrap();
        e.require_complete_from(4);
        e.write_page(2, &page).unwrap(); // below the range: any subset
        assert!(matches!(
            e.write_page(5, &page),
            Err(LtxError::NonSequentialPage { prev: 2, pgno: 5 })
        ));
        e.write_page(4, &page).unwrap();
        e.write_page(5, &page).unwrap();
        assert!(matches!(e.finish(), Err(LtxError::BadPage { pgno: 6, .. })));

        // A full image in the middle of the chain: every page 1..=commit.
        let mut e = Encoder::new(Vec::new(), &l0(512, 3, 9)).unwrap();
        e.require_complete_from(1);
        e.write_page(1, &page).unwrap();
        e.write_page(2, &page).unwrap();
        assert!(matches!(e.finish(), Err(LtxError::BadPage { pgno: 3, .. })));
        let mut e = Encoder::new(Vec::new(), &l0(512, 3, 9)).unwrap();
        e.require_complete_from(1);
        for p in 1..=3 {
            e.write_page(p, &page).unwrap();
        }
        e.finish().unwrap();
    }

    #[test]
    fn snapshot_must_be_complete_and_in_order() {
        let page = vec![0u8; 512];
        let mut e = Encoder::new(Vec::new(), &l0(512, 3, 1)).unwrap();
        assert!(matches!(
            e.write_page(2, &page),
            Err(LtxError::NonSequentialPage { prev: 0, pgno: 2 })
        ));
        e.write_page(1, &page).unwrap();
        assert!(matches!(
            e.write_page(3, &page),
            Err(LtxError::NonSequentialPage { prev: 1, pgno: 3 })
        ));
        e.write_page(2, &page).unwrap();
        assert!(matches!(e.finish(), Err(LtxError::BadPage { pgno: 3, .. })));
    }

    #[test]
    fn compresses_for_real() {
        let page = vec![0u8; 4096];
        let mut e = Encoder::new(Vec::new(), &l0(4096, 1, 2)).unwrap();
        e.write_page(1, &page).unwrap();
        let (out, _) = e.finish().unwrap();
        assert!(
            out.len() < 200,
            "a zero page must compress well, got {} bytes",
            out.len()
        );
    }

    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_poison_the_encoder() {
        let page = vec![7u8; 512];
        assert!(Encoder::new(FailAfter(10), &l0(512, 2, 2)).is_err());
        let mut e = Encoder::new(FailAfter(HEADER_SIZE), &l0(512, 2, 2)).unwrap();
        assert!(matches!(e.write_page(1, &page), Err(LtxError::Io(_))));
        assert!(matches!(e.write_page(2, &page), Err(LtxError::Io(_))));
        assert!(e.finish().is_err());
    }
}

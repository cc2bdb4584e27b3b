//! SQLite's rollback journal (the `-journal` file of `journal_mode=DELETE`), written by the
//! follower before it changes the replica database, so that a crash in the middle of an apply
//! is rolled back by whichever SQLite connection (or follower) opens the database next.
//! Pure: encodes and parses bytes; the file I/O lives in [`super::apply`].
//!
//! Layout (SQLite's file format document, "The Rollback Journal"), big-endian:
//! ```text
//! header, padded to `sector_size` bytes:
//!   magic d9 d5 05 f9 20 a1 63 d7 | nRec u32 | nonce u32 | original size in pages u32
//!   | sector size u32 | page size u32 | zeros
//! nRec records: pgno u32 | original page content | checksum u32
//! ```
//! The checksum of a record is the nonce plus every 200th byte of the page, counted back from
//! the end (`pageSize-200`, `pageSize-400`, … while positive), as unsigned 8-bit values.

use thiserror::Error;

/// First bytes of every journal header.
pub const MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// Bytes of the header fields before the zero padding.
const HEADER_FIELDS: usize = 28;
/// `nRec` value SQLite writes with `synchronous=OFF`: count the records from the file size.
const NREC_FROM_FILE_SIZE: u32 = 0xffff_ffff;
/// Smallest and largest sector sizes SQLite accepts in a journal header (pager.c).
pub const MIN_SECTOR_SIZE: u32 = 32;
pub const MAX_SECTOR_SIZE: u32 = 0x10000;
/// SQLite's largest page size.
const MAX_PAGE_SIZE: u32 = 65536;
/// Byte offset of the page containing the pending-lock byte (1 GiB): SQLite never stores it.
const PENDING_BYTE: u64 = 0x4000_0000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("journal header: {0}")]
    BadHeader(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    /// Number of page records that follow (SQLite's `nRec`).
    pub record_count: u32,
    /// Random checksum initialiser, different for every journal.
    pub nonce: u32,
    /// Database size in pages before the transaction: a rollback truncates to it.
    pub original_pages: u32,
    pub sector_size: u32,
    pub page_size: u32,
}

impl JournalHeader {
    /// The header padded to `sector_size` bytes (records start at that offset).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.sector_size as usize];
        out[..8].copy_from_slice(&MAGIC);
        for (i, v) in [
            self.record_count,
            self.nonce,
            self.original_pages,
            self.sector_size,
            self.page_size,
        ]
        .iter()
        .enumerate()
        {
            out[8 + i * 4..12 + i * 4].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Parses a header; `Ok(None)` when the magic is absent (a zeroed, truncated or foreign
    /// file: SQLite does not consider such a journal hot and plays nothing back).
    pub fn decode(buf: &[u8]) -> Result<Option<JournalHeader>, JournalError> {
        if buf.len() < HEADER_FIELDS || buf[..8] != MAGIC {
            return Ok(None);
        }
        let u = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let h = JournalHeader {
            record_count: u(8),
            nonce: u(12),
            original_pages: u(16),
            sector_size: u(20),
            page_size: u(24),
        };
        if !(512..=MAX_PAGE_SIZE).contains(&h.page_size) || !h.page_size.is_power_of_two() {
            return Err(JournalError::BadHeader(format!(
                "page size {} is not a power of two in 512..=65536",
                h.page_size
            )));
        }
        if !(MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&h.sector_size)
            || !h.sector_size.is_power_of_two()
        {
            return Err(JournalError::BadHeader(format!(
                "sector size {} is not a power of two in 32..=65536",
                h.sector_size
            )));
        }
        Ok(Some(h))
    }
}

/// Length of one page record: pgno, page, checksum.
pub fn record_len(page_size: u32) -> u64 {
    u64::from(page_size) + 8
}

/// SQLite's journal record checksum (`pager_cksum`).
pub fn record_checksum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len() as i64 - 200;
    while i > 0 {
        sum = sum.wrapping_add(u32::from(page[i as usize]));
        i -= 200;
    }
    sum
}

/// Appends one record (the original content of `pgno`) to `out`.
pub fn encode_record(pgno: u32, page: &[u8], nonce: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&pgno.to_be_bytes());
    out.extend_from_slice(page);
    out.extend_from_slice(&record_checksum(nonce, page).to_be_bytes());
}

/// What playing a journal back does: truncate the database to `original_pages` of
/// `page_size`, then write each listed record's page (read from the journal at `offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub page_size: u32,
    pub original_pages: u32,
    /// `(pgno, byte offset of the page content in the journal)`, in journal order.
    pub pages: Vec<(u32, u64)>,
}

/// Decides what a hot journal of `len` bytes restores, the way SQLite's `pager_playback` does:
/// segment after segment (each header sector-aligned), records up to `nRec`, stopping at the
/// first record whose page number is 0 or the lock page or whose checksum does not match (a
/// torn write), or at the end of the file. Records above the original size are skipped.
/// `read_at(offset, buf)` fills `buf` from the journal; a short file is handled here.
/// `Ok(None)`: not a hot journal (no valid first header); delete it without playing it back.
pub fn plan_rollback(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<Option<Rollback>, std::io::Error> {
    let mut first = [0u8; HEADER_FIELDS];
    if len < HEADER_FIELDS as u64 {
        return Ok(None);
    }
    read_at(0, &mut first)?;
    let header = match JournalHeader::decode(&first) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    };
    // Only the first header sets the page and sector sizes and the size to truncate to.
    let page_size = header.page_size;
    let sector = u64::from(header.sector_size);
    let rec_len = record_len(page_size);
    let lock_pgno = (PENDING_BYTE / u64::from(page_size) + 1) as u32;
    let mut out = Rollback {
        page_size,
        original_pages: header.original_pages,
        pages: Vec::new(),
    };
    let mut page = vec![0u8; page_size as usize];
    let mut hdr_off = 0u64;
    let mut h = header;
    'segments: loop {
        let mut off = hdr_off + sector;
        let count = if h.record_count == NREC_FROM_FILE_SIZE {
            len.saturating_sub(off) / rec_len
        } else {
            u64::from(h.record_count)
        };
        for _ in 0..count {
            if off + rec_len > len {
                break 'segments;
            }
            let mut pg = [0u8; 4];
            read_at(off, &mut pg)?;
            let pgno = u32::from_be_bytes(pg);
            if pgno == 0 || pgno == lock_pgno {
                break 'segments;
            }
            if pgno <= out.original_pages {
                read_at(off + 4, &mut page)?;
                let mut ck = [0u8; 4];
                read_at(off + 4 + u64::from(page_size), &mut ck)?;
                if record_checksum(h.nonce, &page) != u32::from_be_bytes(ck) {
                    break 'segments;
                }
                out.pages.push((pgno, off + 4));
            }
            off += rec_len;
        }
        // The next segment's header starts at the next sector boundary.
        hdr_off = off.div_ceil(sector) * sector;
        if hdr_off + sector > len {
            break;
        }
        let mut next = [0u8; HEADER_FIELDS];
        read_at(hdr_off, &mut next)?;
        match JournalHeader::decode(&next) {
            Ok(Some(n)) => h = n,
            _ => break,
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_from(bytes: &[u8]) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<()> + '_ {
        move |off, buf| {
            let off = off as usize;
            if off + buf.len() > bytes.len() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.copy_from_slice(&bytes[off..off + buf.len()]);
            Ok(())
        }
    }

    fn journal(h: JournalHeader, recs: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = h.encode();
        for (pgno, page) in recs {
            encode_record(*pgno, page, h.nonce, &mut out);
        }
        out
    }

    fn header(n: u32) -> JournalHeader {
        JournalHeader {
            record_count: n,
            nonce: 0x1234_5678,
            original_pages: 10,
            sector_size: 512,
            page_size: 1024,
        }
    }

    #[test]
    fn checksum_matches_sqlite_definition() {
        // 1024-byte page: bytes 824, 624, 424, 224, 24 are summed.
        let mut page = vec![0u8; 1024];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let want = [824usize, 624, 424, 224, 24]
            .iter()
            .fold(7u32, |s, &i| s.wrapping_add(u32::from(page[i])));
        assert_eq!(record_checksum(7, &page), want);
        // 512-byte page: 312 and 112. Wrapping arithmetic near u32::MAX.
        let page = vec![0xffu8; 512];
        assert_eq!(record_checksum(u32::MAX, &page), 509);
    }

    #[test]
    fn header_round_trip_and_magic() {
        let h = header(3);
        let bytes = h.encode();
        assert_eq!(bytes.len(), 512);
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(JournalHeader::decode(&bytes).unwrap(), Some(h));
        assert_eq!(JournalHeader::decode(&[0u8; 512]).unwrap(), None);
        let mut bad = bytes.clone();
        bad[27] = 0x03; // page size 1027
        assert!(JournalHeader::decode(&bad).is_err());
    }

    #[test]
    fn rollback_lists_records_within_the_original_size() {
        let recs: Vec<(u32, Vec<u8>)> = [1u32, 4, 12, 7]
            .iter()
            .map(|&p| (p, vec![p as u8; 1024]))
            .collect();
        let j = journal(header(4), &recs);
        let r = plan_rollback(j.len() as u64, read_from(&j))
            .unwrap()
            .unwrap();
        assert_eq!(r.original_pages, 10);
        assert_eq!(r.page_size, 1024);
        let pgnos: Vec<u32> = r.pages.iter().map(|p| p.0).collect();
        assert_eq!(pgnos, vec![1, 4, 7], "page 12 is beyond the original size");
        let (_, off) = r.pages[1];
        assert_eq!(&j[off as usize..off as usize + 1024], &[4u8; 1024][..]);
    }

    #[test]
    fn torn_record_stops_playback() {
        let recs: Vec<(u32, Vec<u8>)> = (1..=3).map(|p| (p, vec![p as u8; 1024])).collect();
        let mut j = journal(header(3), &recs);
        // Corrupt the middle of record 2 at a sampled byte: its checksum no longer matches.
        let rec2 = 512 + record_len(1024) as usize;
        j[rec2 + 4 + 824] ^= 0x55;
        let r = plan_rollback(j.len() as u64, read_from(&j))
            .unwrap()
            .unwrap();
        assert_eq!(r.pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1]);
        // A file cut short in record 3: records 1 and 2 only.
        let j = journal(header(3), &recs);
        let cut = j.len() - 10;
        let r = plan_rollback(cut as u64, read_from(&j[..cut]))
            .unwrap()
            .unwrap();
        assert_eq!(r.pages.len(), 2);
    }

    #[test]
    fn not_hot_without_magic_or_when_short() {
        assert_eq!(plan_rollback(0, read_from(&[])).unwrap(), None);
        let zeros = vec![0u8; 4096];
        assert_eq!(plan_rollback(4096, read_from(&zeros)).unwrap(), None);
    }

    #[test]
    fn nrec_from_file_size_and_second_segment() {
        let recs: Vec<(u32, Vec<u8>)> = (1..=2).map(|p| (p, vec![9u8; 1024])).collect();
        let j = journal(header(NREC_FROM_FILE_SIZE), &recs);
        let r = plan_rollback(j.len() as u64, read_from(&j))
            .unwrap()
            .unwrap();
        assert_eq!(r.pages.len(), 2);
        // Two segments, the second header at the next sector boundary.
        let mut j = journal(header(1), &recs[..1]);
        j.resize(j.len().div_ceil(512) * 512, 0);
        let mut h2 = header(1);
        h2.nonce = 99;
        j.extend(journal(h2, &[(5, vec![5u8; 1024])]));
        let r = plan_rollback(j.len() as u64, read_from(&j))
            .unwrap()
            .unwrap();
        assert_eq!(r.pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 5]);
    }

    proptest! {
        #[test]
        fn encode_then_plan_round_trips(
            pages in proptest::collection::btree_map(1u32..64, any::<u8>(), 0..20),
            nonce in any::<u32>(),
            shift in 0u32..4,
        ) {
            let page_size = 512u32 << shift;
            let h = JournalHeader { record_count: pages.len() as u32, nonce, original_pages: 64, sector_size: 512, page_size };
            let recs: Vec<(u32, Vec<u8>)> = pages.iter().map(|(&p, &b)| (p, (0..page_size).map(|i| b.wrapping_add(i as u8)).collect())).collect();
            let j = journal(h, &recs);
            let r = plan_rollback(j.len() as u64, read_from(&j)).unwrap().unwrap();
            prop_assert_eq!(r.pages.len(), recs.len());
            for ((pgno, off), (want_pgno, want)) in r.pages.iter().zip(&recs) {
                prop_assert_eq!(pgno, want_pgno);
                prop_assert_eq!(&j[*off as usize..*off as usize + page_size as usize], &want[..]);
            }
        }
    }
}

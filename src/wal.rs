//! SQLite WAL file format: header, frame headers and the cumulative checksum (pure).
//!
//! ```text
//! WAL header (32 bytes, big-endian):  magic | version | page size | checkpoint seq |
//!                                     salt-1 | salt-2 | checksum-1 | checksum-2
//! frame header (24 bytes):            pgno | db size after commit (0 = not a commit) |
//!                                     salt-1 | salt-2 | checksum-1 | checksum-2
//! ```
//! The checksum runs over the header's first 24 bytes, then over each frame's first 8 header
//! bytes and its page, cumulatively. The magic's low bit selects the byte order of the words
//! fed to the checksum (0x377f0682 little-endian, 0x377f0683 big-endian).

use thiserror::Error;

pub const WAL_HEADER_SIZE: u64 = 32;
pub const FRAME_HEADER_SIZE: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const WAL_VERSION: u32 = 3_007_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WalError {
    #[error("WAL header: bad magic {0:#010x}")]
    Magic(u32),
    #[error("WAL header: unsupported version {0}")]
    Version(u32),
    #[error("WAL header: invalid page size {0}")]
    PageSize(u32),
    #[error("WAL header: checksum mismatch")]
    HeaderChecksum,
}

/// Running WAL checksum state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Checksum(pub u32, pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub big_endian: bool,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: Checksum,
}

impl WalHeader {
    /// Parses and verifies the 32-byte header.
    pub fn parse(buf: &[u8; 32]) -> Result<WalHeader, WalError> {
        let magic = be32(buf, 0);
        let big_endian = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            other => return Err(WalError::Magic(other)),
        };
        let version = be32(buf, 4);
        if version != WAL_VERSION {
            return Err(WalError::Version(version));
        }
        let page_size = be32(buf, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalError::PageSize(page_size));
        }
        let checksum = Checksum(be32(buf, 24), be32(buf, 28));
        if checksum_update(big_endian, Checksum::default(), &buf[..24]) != checksum {
            return Err(WalError::HeaderChecksum);
        }
        Ok(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be32(buf, 12),
            salt1: be32(buf, 16),
            salt2: be32(buf, 20),
            checksum,
        })
    }

    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    /// Verifies the frame at hand against this header's salts and the running checksum
    /// `prev`; returns the new running checksum if the frame is valid.
    pub fn verify_frame(
        &self,
        prev: Checksum,
        frame_header: &[u8; 24],
        page: &[u8],
    ) -> Option<Checksum> {
        let fh = FrameHeader::parse(frame_header);
        if fh.salt1 != self.salt1 || fh.salt2 != self.salt2 || fh.pgno == 0 {
            return None;
        }
        let c = checksum_update(self.big_endian, prev, &frame_header[..8]);
        let c = checksum_update(self.big_endian, c, page);
        (c == fh.checksum).then_some(c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after this commit; 0 if this frame is not a commit.
    pub commit_size: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: Checksum,
}

impl FrameHeader {
    pub fn parse(buf: &[u8; 24]) -> FrameHeader {
        FrameHeader {
            pgno: be32(buf, 0),
            commit_size: be32(buf, 4),
            salt1: be32(buf, 8),
            salt2: be32(buf, 12),
            checksum: Checksum(be32(buf, 16), be32(buf, 20)),
        }
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `prev`.
pub fn checksum_update(big_endian: bool, prev: Checksum, data: &[u8]) -> Checksum {
    debug_assert!(data.len().is_multiple_of(8));
    let (mut s0, mut s1) = (prev.0, prev.1);
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    Checksum(s0, s1)
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Builds WAL bytes for tests (here and in `capture`): a header and frames with valid checksums.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub struct WalBuilder {
        pub header: WalHeader,
        pub bytes: Vec<u8>,
        running: Checksum,
    }

    impl WalBuilder {
        pub fn new(page_size: u32, salt1: u32, salt2: u32) -> WalBuilder {
            let mut h = [0u8; 32];
            h[0..4].copy_from_slice(&MAGIC_LE.to_be_bytes());
            h[4..8].copy_from_slice(&WAL_VERSION.to_be_bytes());
            h[8..12].copy_from_slice(&page_size.to_be_bytes());
            h[16..20].copy_from_slice(&salt1.to_be_bytes());
            h[20..24].copy_from_slice(&salt2.to_be_bytes());
            let c = checksum_update(false, Checksum::default(), &h[..24]);
            h[24..28].copy_from_slice(&c.0.to_be_bytes());
            h[28..32].copy_from_slice(&c.1.to_be_bytes());
            let header = WalHeader::parse(&h).expect("valid header");
            WalBuilder {
                header,
                bytes: h.to_vec(),
                running: c,
            }
        }

        /// Appends a frame; `commit_size` > 0 marks a commit.
        pub fn frame(&mut self, pgno: u32, commit_size: u32, fill: u8) -> &mut Self {
            let page = vec![fill; self.header.page_size as usize];
            let mut fh = [0u8; 24];
            fh[0..4].copy_from_slice(&pgno.to_be_bytes());
            fh[4..8].copy_from_slice(&commit_size.to_be_bytes());
            fh[8..12].copy_from_slice(&self.header.salt1.to_be_bytes());
            fh[12..16].copy_from_slice(&self.header.salt2.to_be_bytes());
            let c = checksum_update(false, self.running, &fh[..8]);
            let c = checksum_update(false, c, &page);
            fh[16..20].copy_from_slice(&c.0.to_be_bytes());
            fh[20..24].copy_from_slice(&c.1.to_be_bytes());
            self.running = c;
            self.bytes.extend_from_slice(&fh);
            self.bytes.extend_from_slice(&page);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::WalBuilder;
    use super::*;

    #[test]
    fn header_round_trip_and_frames_verify() {
        let mut w = WalBuilder::new(4096, 7, 9);
        w.frame(1, 0, 0xaa).frame(2, 2, 0xbb);
        let h = WalHeader::parse(w.bytes[..32].try_into().unwrap()).unwrap();
        assert_eq!((h.page_size, h.salt1, h.salt2), (4096, 7, 9));
        let fs = h.frame_size() as usize;
        let mut c = h.checksum;
        for i in 0..2 {
            let off = 32 + i * fs;
            let fh: [u8; 24] = w.bytes[off..off + 24].try_into().unwrap();
            c = h
                .verify_frame(c, &fh, &w.bytes[off + 24..off + fs])
                .expect("valid frame");
        }
        // A flipped page byte breaks the chain.
        let mut bad = w.bytes.clone();
        bad[32 + 24 + 100] ^= 1;
        let fh: [u8; 24] = bad[32..56].try_into().unwrap();
        assert!(h
            .verify_frame(h.checksum, &fh, &bad[56..56 + 4096])
            .is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        let w = WalBuilder::new(4096, 1, 2);
        let mut b: [u8; 32] = w.bytes[..32].try_into().unwrap();
        b[31] ^= 1;
        assert_eq!(WalHeader::parse(&b), Err(WalError::HeaderChecksum));
        b[0] = 0;
        assert!(matches!(WalHeader::parse(&b), Err(WalError::Magic(_))));
    }

    #[test]
    fn big_endian_checksum_differs() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_ne!(
            checksum_update(true, Checksum::default(), &data),
            checksum_update(false, Checksum::default(), &data)
        );
    }
}

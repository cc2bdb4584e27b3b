//! The 100-byte LTX header and 16-byte trailer (spec §3.1, §3.4).
use super::{LtxError, CHECKSUM_FLAG};
use crate::TxId;

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
pub const TRAILER_SIZE: usize = 16;
/// The only valid header flag: no database checksums (every Litestream 0.5 file sets it).
pub const FLAG_NO_CHECKSUM: u32 = 0x2;

/// Smallest and largest SQLite page sizes.
pub const MIN_PAGE_SIZE: u32 = 512;
pub const MAX_PAGE_SIZE: u32 = 65536;

/// The page holding byte offset 1 GiB, which SQLite never uses and LTX never stores.
pub fn lock_pgno(page_size: u32) -> u32 {
    (0x4000_0000 / page_size) + 1
}

/// A power of two in 512..=65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub flags: u32,
    pub page_size: u32,
    /// Database size in pages after applying this file.
    pub commit: u32,
    pub min_txid: TxId,
    pub max_txid: TxId,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl Header {
    /// The 100 header bytes: fields in order, big-endian, 20 reserved zero bytes at the end.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses the fields after checking the magic. Does not [`validate`](Self::validate); the
    /// reserved bytes are ignored, as ltx does.
    pub fn decode(buf: &[u8; HEADER_SIZE]) -> Result<Header, LtxError> {
        if &buf[0..4] != MAGIC {
            let mut m = [0u8; 4];
            m.copy_from_slice(&buf[0..4]);
            return Err(LtxError::BadMagic(m));
        }
        Ok(Header {
            flags: be_u32(buf, 4),
            page_size: be_u32(buf, 8),
            commit: be_u32(buf, 12),
            min_txid: be_u64(buf, 16),
            max_txid: be_u64(buf, 24),
            timestamp_ms: be_i64(buf, 32),
            pre_apply_checksum: be_u64(buf, 40),
            wal_offset: be_i64(buf, 48),
            wal_size: be_i64(buf, 56),
            wal_salt1: be_u32(buf, 64),
            wal_salt2: be_u32(buf, 68),
            node_id: be_u64(buf, 72),
        })
    }

    /// The header rules every ltx reader applies (spec §3.1).
    pub fn validate(&self) -> Result<(), LtxError> {
        let bad = |msg: String| Err(LtxError::InvalidHeader(msg));
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return bad(format!(
                "flags {:#010x} has unknown bits; only {FLAG_NO_CHECKSUM:#x} is allowed",
                self.flags
            ));
        }
        if !is_valid_page_size(self.page_size) {
            return bad(format!(
                "page size {} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}",
                self.page_size
            ));
        }
        if self.min_txid == 0 {
            return bad("min TXID is 0; TXIDs start at 1".into());
        }
        if self.max_txid < self.min_txid {
            return bad(format!(
                "max TXID {} is below min TXID {}",
                self.max_txid, self.min_txid
            ));
        }
        if self.wal_offset < 0 {
            return bad(format!("WAL offset {} is negative", self.wal_offset));
        }
        if self.wal_size < 0 {
            return bad(format!("WAL size {} is negative", self.wal_size));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad("WAL salts are set but the WAL offset is 0; set both or neither".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad(format!(
                "WAL size {} is set but the WAL offset is 0",
                self.wal_size
            ));
        }
        if self.is_snapshot() {
            if self.pre_apply_checksum != 0 {
                return bad("pre-apply checksum must be 0 in a snapshot (min TXID 1)".into());
            }
        } else if self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad(
                    "pre-apply checksum must be 0 when flag 0x2 (no checksum) is set".into(),
                );
            }
        } else if self.pre_apply_checksum == 0 {
            return bad("pre-apply checksum is required without flag 0x2 (no checksum)".into());
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad(format!(
                "pre-apply checksum {:016x} lacks bit 63",
                self.pre_apply_checksum
            ));
        }
        Ok(())
    }

    /// min TXID 1: the file holds every page of the database.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == 1
    }

    /// Flag 0x2: the file carries no database checksums.
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// [`lock_pgno`] for this header's page size.
    pub fn lock_pgno(&self) -> u32 {
        lock_pgno(self.page_size.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    pub post_apply_checksum: u64,
    pub file_checksum: u64,
}

impl Trailer {
    #[cfg(test)]
    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }

    pub fn decode(buf: &[u8; TRAILER_SIZE]) -> Trailer {
        Trailer {
            post_apply_checksum: be_u64(buf, 0),
            file_checksum: be_u64(buf, 8),
        }
    }

    #[cfg(test)]
    /// ltx's trailer rules: with flag 0x2 the post-apply checksum is 0, otherwise it is non-zero
    /// with bit 63; the file checksum always has bit 63.
    pub fn validate(&self, header: &Header) -> Result<(), LtxError> {
        if header.no_checksum() {
            if self.post_apply_checksum != 0 {
                return Err(LtxError::BadTrailer(format!(
                    "post-apply checksum {:016x} is not allowed with flag 0x2 (must be 0)",
                    self.post_apply_checksum
                )));
            }
        } else if self.post_apply_checksum & CHECKSUM_FLAG == 0 {
            return Err(LtxError::BadTrailer(format!(
                "post-apply checksum {:016x} is required and must have bit 63",
                self.post_apply_checksum
            )));
        }
        if self.file_checksum & CHECKSUM_FLAG == 0 {
            return Err(LtxError::BadTrailer(format!(
                "file checksum {:016x} lacks bit 63",
                self.file_checksum
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l0() -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: 4096,
            commit: 4,
            min_txid: 2,
            max_txid: 2,
            timestamp_ms: 0x1a2047f5f63,
            pre_apply_checksum: 0,
            wal_offset: 16512,
            wal_size: 20600,
            wal_salt1: 0x046a805e,
            wal_salt2: 0xf3560ff8,
            node_id: 0,
        }
    }

    #[test]
    fn encodes_like_the_spec_hexdump() {
        // First 0x60 bytes of the annotated L0 file in spec §3.9.
        let want: [u8; 0x48] = [
            0x4c, 0x54, 0x58, 0x31, 0, 0, 0, 2, 0, 0, 0x10, 0, 0, 0, 0, 4, //
            0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, //
            0, 0, 1, 0xa2, 0x04, 0x7f, 0x5f, 0x63, 0, 0, 0, 0, 0, 0, 0, 0, //
            0, 0, 0, 0, 0, 0, 0x40, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x78, //
            0x04, 0x6a, 0x80, 0x5e, 0xf3, 0x56, 0x0f, 0xf8,
        ];
        let b = l0().encode();
        assert_eq!(&b[..0x48], &want[..]);
        assert!(b[0x48..].iter().all(|&x| x == 0));
        assert_eq!(Header::decode(&b).unwrap(), l0());
        l0().validate().unwrap();
    }

    #[test]
    fn bad_magic() {
        let mut b = l0().encode();
        b[3] = b'2';
        assert!(matches!(Header::decode(&b), Err(LtxError::BadMagic(m)) if &m == b"LTX2"));
    }

    #[test]
    fn lock_page() {
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(65536), 16_385);
    }

    #[test]
    fn validate_rules() {
        let ok = l0();
        let cases: Vec<(&str, Header)> = vec![
            ("unknown flag", Header { flags: 0x3, ..ok }),
            ("flag 1", Header { flags: 0x1, ..ok }),
            ("page size 0", Header { page_size: 0, ..ok }),
            (
                "page size 256",
                Header {
                    page_size: 256,
                    ..ok
                },
            ),
            (
                "page size 3000",
                Header {
                    page_size: 3000,
                    ..ok
                },
            ),
            (
                "page size 128k",
                Header {
                    page_size: 131072,
                    ..ok
                },
            ),
            (
                "min 0",
                Header {
                    min_txid: 0,
                    max_txid: 0,
                    ..ok
                },
            ),
            ("max < min", Header { max_txid: 1, ..ok }),
            (
                "neg wal offset",
                Header {
                    wal_offset: -1,
                    ..ok
                },
            ),
            ("neg wal size", Header { wal_size: -1, ..ok }),
            (
                "salt without offset",
                Header {
                    wal_offset: 0,
                    wal_size: 0,
                    ..ok
                },
            ),
            (
                "size without offset",
                Header {
                    wal_offset: 0,
                    wal_salt1: 0,
                    wal_salt2: 0,
                    ..ok
                },
            ),
            (
                "pre-apply with flag 2",
                Header {
                    pre_apply_checksum: CHECKSUM_FLAG | 5,
                    ..ok
                },
            ),
            (
                "snapshot with pre-apply",
                Header {
                    flags: 0,
                    min_txid: 1,
                    pre_apply_checksum: CHECKSUM_FLAG | 5,
                    ..ok
                },
            ),
            ("checksummed without pre-apply", Header { flags: 0, ..ok }),
            (
                "pre-apply without bit 63",
                Header {
                    flags: 0,
                    pre_apply_checksum: 5,
                    ..ok
                },
            ),
        ];
        for (what, h) in cases {
            assert!(
                matches!(h.validate(), Err(LtxError::InvalidHeader(_))),
                "{what} must be rejected"
            );
        }
        for h in [
            Header {
                flags: 0,
                pre_apply_checksum: CHECKSUM_FLAG | 5,
                ..ok
            },
            Header {
                flags: 0,
                min_txid: 1,
                ..ok
            },
            Header {
                wal_offset: 0,
                wal_size: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                ..ok
            },
            Header { wal_size: 0, ..ok },
            Header {
                page_size: 512,
                ..ok
            },
            Header {
                page_size: 65536,
                ..ok
            },
            Header { commit: 0, ..ok },
        ] {
            h.validate().unwrap();
        }
    }

    #[test]
    fn trailer_round_trip_and_rules() {
        let t = Trailer {
            post_apply_checksum: 0,
            file_checksum: 0x8a91_9eeb_c9c6_ac57,
        };
        assert_eq!(Trailer::decode(&t.encode()), t);
        assert_eq!(
            &t.encode()[8..],
            &[0x8a, 0x91, 0x9e, 0xeb, 0xc9, 0xc6, 0xac, 0x57]
        );
        t.validate(&l0()).unwrap();
        let no_flag = Trailer {
            file_checksum: 0x0a91,
            ..t
        };
        assert!(no_flag.validate(&l0()).is_err());
        let post = Trailer {
            post_apply_checksum: CHECKSUM_FLAG | 1,
            ..t
        };
        assert!(post.validate(&l0()).is_err());
        let checked = Header {
            flags: 0,
            pre_apply_checksum: CHECKSUM_FLAG | 5,
            ..l0()
        };
        post.validate(&checked).unwrap();
        assert!(t.validate(&checked).is_err());
    }

    proptest! {
        #[test]
        fn header_round_trip(flags: u32, page_size: u32, commit: u32, min_txid: u64, max_txid: u64,
                             timestamp_ms: i64, pre: u64, wal_offset: i64, wal_size: i64,
                             s1: u32, s2: u32, node_id: u64) {
            let h = Header { flags, page_size, commit, min_txid, max_txid, timestamp_ms,
                pre_apply_checksum: pre, wal_offset, wal_size, wal_salt1: s1, wal_salt2: s2, node_id };
            prop_assert_eq!(Header::decode(&h.encode()).unwrap(), h);
            let _ = h.validate();
        }
    }
}

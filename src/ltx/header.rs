//! The 100-byte LTX header and 16-byte trailer (spec §3.1, §3.4). STUB: to be implemented.
use super::LtxError;
use crate::TxId;

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
pub const TRAILER_SIZE: usize = 16;
/// The only valid header flag: no database checksums (every Litestream 0.5 file sets it).
pub const FLAG_NO_CHECKSUM: u32 = 0x2;

/// The page holding byte offset 1 GiB, which SQLite never uses and LTX never stores.
pub fn lock_pgno(page_size: u32) -> u32 {
    (0x4000_0000 / page_size) + 1
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

impl Header {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        todo!()
    }
    pub fn decode(_buf: &[u8; HEADER_SIZE]) -> Result<Header, LtxError> {
        todo!()
    }
    pub fn validate(&self) -> Result<(), LtxError> {
        todo!()
    }
    /// min TXID 1: the file holds every page of the database.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    pub post_apply_checksum: u64,
    pub file_checksum: u64,
}

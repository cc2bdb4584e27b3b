//! LTX v3, the file format of Litestream 0.5 replicas (`docs/ltx-format.md`; pure, no I/O of its own).
//!
//! Layout: 100-byte header, page frames in ascending pgno (6-byte page header + u32 length + LZ4
//! block), a 6-byte zero end marker, the page index (uvarint triples, `0` terminator, u64 length),
//! and a 16-byte trailer (post-apply checksum, file checksum). All integers are big-endian.

mod chain;
mod checksum;
mod decoder;
mod encoder;
mod header;
mod index;
mod lz4frame;
mod name;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_real;

pub use chain::{check_link, LinkError};
pub use checksum::{crc64, Crc64, CHECKSUM_FLAG};
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use header::{lock_pgno, Header, Trailer, FLAG_NO_CHECKSUM, HEADER_SIZE, MAGIC, TRAILER_SIZE};
pub use name::{format_file_name, parse_file_name};
// Used by the tests of this and other modules only.
#[cfg(test)]
pub use {
    checksum::{database_checksum, DatabaseChecksum},
    decoder::PageIndexEntry,
    index::decode_index_from_tail,
};

use thiserror::Error;

/// Errors of the LTX codec. Callers add the object name (`restore`, `replica`).
#[derive(Debug, Error)]
pub enum LtxError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an LTX file: bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    #[error("invalid page frame at byte {offset}: {reason}")]
    InvalidFrame { offset: u64, reason: String },
    #[error("nonsequential page numbers: {prev} then {pgno}")]
    NonSequentialPage { prev: u32, pgno: u32 },
    #[error("page {pgno}: {reason}")]
    BadPage { pgno: u32, reason: String },
    #[error("invalid page index: {0}")]
    BadIndex(String),
    #[error("invalid trailer: {0}")]
    BadTrailer(String),
    #[error("file checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    ChecksumMismatch { stored: u64, computed: u64 },
    #[error("unexpected end of file: {0}")]
    Truncated(String),
}

impl LtxError {
    /// A page broke the encoder's rules (order, range, completeness): the input was wrong,
    /// not the output device.
    pub fn is_page_rule(&self) -> bool {
        matches!(
            self,
            LtxError::NonSequentialPage { .. } | LtxError::BadPage { .. }
        )
    }
}

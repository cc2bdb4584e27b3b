//! Streaming LTX reader. STUB.
use std::io::Read;

use super::{Header, LtxError, Trailer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageIndexEntry {
    pub pgno: u32,
    pub offset: u64,
    pub size: u64,
}

pub struct Decoder<R: Read> {
    _r: R,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(_r: R) -> Result<Self, LtxError> {
        todo!()
    }
    pub fn header(&self) -> &Header {
        todo!()
    }
    /// Decodes the next page into `buf` (`buf.len()` == page size) and returns its pgno, or
    /// `None` at the end marker. Both page encodings are accepted (spec §3.2).
    pub fn next_page(&mut self, _buf: &mut [u8]) -> Result<Option<u32>, LtxError> {
        todo!()
    }
    /// After `next_page` returned `None`: reads the page index and trailer, verifies the file
    /// checksum, and checks that nothing follows.
    pub fn finish(self) -> Result<(Trailer, Vec<PageIndexEntry>), LtxError> {
        todo!()
    }
}

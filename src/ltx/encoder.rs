//! Streaming LTX writer. STUB.
use std::io::Write;

use super::{Header, LtxError, Trailer};

pub struct Encoder<W: Write> {
    _w: W,
}

impl<W: Write> Encoder<W> {
    /// Writes the header. The header's flags must be `FLAG_NO_CHECKSUM`.
    pub fn new(_w: W, _header: &Header) -> Result<Self, LtxError> {
        todo!()
    }
    /// Appends one page: strictly ascending pgno, never the lock page, `data.len() == page size`.
    pub fn write_page(&mut self, _pgno: u32, _data: &[u8]) -> Result<(), LtxError> {
        todo!()
    }
    /// Writes end marker, page index and trailer; returns the writer and the trailer.
    pub fn finish(self) -> Result<(W, Trailer), LtxError> {
        todo!()
    }
}

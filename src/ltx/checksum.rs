//! CRC-64/GO-ISO (spec §3.5). STUB.
pub const CHECKSUM_FLAG: u64 = 1 << 63;
pub fn crc64(_data: &[u8]) -> u64 {
    todo!()
}
pub struct Crc64;

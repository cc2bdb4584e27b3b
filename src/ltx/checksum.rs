//! CRC-64/GO-ISO and the checksums built on it (spec §3.5, §3.6).
//!
//! Every LTX checksum is a CRC-64 with Go's ISO table (reflected, poly 0x1B, init and xorout all
//! ones) with bit 63 forced to 1, so that a stored zero can mean "no checksum".

use crc::{Crc, Digest, Table, CRC_64_GO_ISO};

use super::header::lock_pgno;

/// Bit 63: set in every stored checksum.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// 16-lane table: about 4x faster than the one-lane default, costs 32 KiB of static data.
static CRC64_ISO: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// CRC-64/GO-ISO of `data` (no flag bit). `crc64(b"123456789") == 0xb909_56c7_75a4_1001`.
pub fn crc64(data: &[u8]) -> u64 {
    CRC64_ISO.checksum(data)
}

/// Incremental CRC-64/GO-ISO: `update` any number of times, `finish` gives the same value as
/// [`crc64`] over the concatenation.
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest<'static, u64, Table<16>>,
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 {
            digest: CRC64_ISO.digest(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The CRC of everything fed so far (no flag bit). The hasher stays usable.
    pub fn finish(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:016x})", self.finish())
    }
}

/// Page checksum of §3.6: `bit63 | crc64(u32_be(pgno) ‖ data)`.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let mut h = Crc64::new();
    h.update(&pgno.to_be_bytes());
    h.update(data);
    CHECKSUM_FLAG | h.finish()
}

/// The database ("rolling") checksum of §3.6: starts at `bit63`; each page's checksum is XORed in
/// (the lock page is skipped). XOR makes it order-independent, and adding a page twice removes it,
/// so a page's old version can be taken out before its new version is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseChecksum {
    value: u64,
    lock_pgno: u32,
}

impl DatabaseChecksum {
    /// The checksum of an empty database of the given page size.
    pub fn new(page_size: u32) -> Self {
        DatabaseChecksum {
            value: CHECKSUM_FLAG,
            lock_pgno: lock_pgno(page_size.max(1)),
        }
    }

    /// Folds page `pgno` in (or out again, if it was already folded in). The lock page is ignored.
    pub fn toggle_page(&mut self, pgno: u32, data: &[u8]) {
        if pgno != self.lock_pgno {
            self.value = fold_page_checksum(self.value, page_checksum(pgno, data));
        }
    }

    pub fn value(&self) -> u64 {
        self.value
    }
}

/// One rolling step: `bit63 | (acc ^ page_checksum)`.
pub fn fold_page_checksum(acc: u64, page_checksum: u64) -> u64 {
    CHECKSUM_FLAG | (acc ^ page_checksum)
}

#[cfg(test)]
/// Database checksum of a whole SQLite image (`data.len()` a multiple of `page_size`; a trailing
/// partial page is ignored). Equals what ltx computes for a snapshot's post-apply checksum.
pub fn database_checksum(page_size: u32, data: &[u8]) -> u64 {
    let mut c = DatabaseChecksum::new(page_size);
    if page_size == 0 {
        return c.value();
    }
    for (i, page) in data.chunks_exact(page_size as usize).enumerate() {
        match u32::try_from(i + 1) {
            Ok(pgno) => c.toggle_page(pgno, page),
            Err(_) => break,
        }
    }
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_value() {
        assert_eq!(crc64(b"123456789"), 0xb909_56c7_75a4_1001);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn incremental_matches_one_shot() {
        let mut h = Crc64::new();
        h.update(b"1234");
        assert_eq!(h.finish(), crc64(b"1234"));
        h.update(b"56789");
        assert_eq!(h.finish(), 0xb909_56c7_75a4_1001);
    }

    #[test]
    fn empty_database_checksum() {
        assert_eq!(database_checksum(4096, &[]), CHECKSUM_FLAG);
    }

    #[test]
    fn database_checksum_is_xor_of_pages_and_skips_lock_page() {
        let ps = 512u32;
        let a = vec![1u8; 512];
        let b = vec![2u8; 512];
        let expected = CHECKSUM_FLAG | (page_checksum(1, &a) ^ page_checksum(2, &b));
        let mut img = a.clone();
        img.extend_from_slice(&b);
        assert_eq!(database_checksum(ps, &img), expected);

        let mut c = DatabaseChecksum::new(ps);
        c.toggle_page(2, &b);
        c.toggle_page(1, &a);
        assert_eq!(c.value(), expected);
        c.toggle_page(lock_pgno(ps), &a);
        assert_eq!(c.value(), expected, "the lock page never counts");
        c.toggle_page(2, &b);
        c.toggle_page(2, &a);
        assert_ne!(c.value(), expected);
    }

    #[test]
    fn page_checksum_has_flag_and_covers_pgno() {
        let d = [7u8; 16];
        assert_ne!(page_checksum(1, &d) & CHECKSUM_FLAG, 0);
        assert_ne!(page_checksum(1, &d), page_checksum(2, &d));
        let mut buf = 1u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&d);
        assert_eq!(page_checksum(1, &d), CHECKSUM_FLAG | crc64(&buf));
    }

    proptest! {
        #[test]
        fn split_anywhere(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 0usize..2000) {
            let cut = cut.min(data.len());
            let mut h = Crc64::new();
            h.update(&data[..cut]);
            h.update(&data[cut..]);
            prop_assert_eq!(h.finish(), crc64(&data));
        }
    }
}

//! The fields of the SQLite database header (the first 100 bytes of page 1) the follower reads
//! and sets. Pure.
//!
//! | offset | field | follower |
//! | --- | --- | --- |
//! | 16 | page size (u16; 1 means 65536) | read |
//! | 18, 19 | file format write/read version: 1 rollback journal, 2 WAL | set to 1/1 |
//! | 24 | file change counter | incremented by every apply |
//! | 28 | database size in pages | set to the applied size |
//! | 92 | version-valid-for | set equal to the change counter |
//!
//! Other connections compare bytes 24..40 at the start of every read transaction in rollback
//! mode and drop their page cache when they differ; the size at 28 is trusted only while 92
//! equals 24.

/// The header magic `"SQLite format 3\0"`.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub const OFF_WRITE_VERSION: usize = 18;
pub const OFF_READ_VERSION: usize = 19;
pub const OFF_CHANGE_COUNTER: usize = 24;
pub const OFF_PAGE_COUNT: usize = 28;
pub const OFF_VERSION_VALID_FOR: usize = 92;
/// Bytes 18/19 value of a rollback-journal database.
pub const ROLLBACK_MODE: u8 = 1;
/// Bytes 18/19 value of a WAL database.
#[cfg(test)]
pub const WAL_MODE: u8 = 2;

/// Size of the database header.
pub const HEADER_LEN: usize = 100;

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// True if `page1` starts with the SQLite magic.
pub fn is_database(page1: &[u8]) -> bool {
    page1.len() >= HEADER_LEN && &page1[..16] == MAGIC
}

/// The page size the header records (`None` if invalid).
pub fn page_size(page1: &[u8]) -> Option<u32> {
    if !is_database(page1) {
        return None;
    }
    let raw = u32::from(u16::from_be_bytes([page1[16], page1[17]]));
    let ps = if raw == 1 { 65536 } else { raw };
    ((512..=65536).contains(&ps) && ps.is_power_of_two()).then_some(ps)
}

pub fn change_counter(page1: &[u8]) -> u32 {
    be32(page1, OFF_CHANGE_COUNTER)
}

pub fn page_count(page1: &[u8]) -> u32 {
    be32(page1, OFF_PAGE_COUNT)
}

/// Turns the primary's page 1 into the replica's: rollback-journal mode, the given change
/// counter (also as version-valid-for) and size in pages.
pub fn patch_for_replica(page1: &mut [u8], counter: u32, pages: u32) {
    page1[OFF_WRITE_VERSION] = ROLLBACK_MODE;
    page1[OFF_READ_VERSION] = ROLLBACK_MODE;
    page1[OFF_CHANGE_COUNTER..OFF_CHANGE_COUNTER + 4].copy_from_slice(&counter.to_be_bytes());
    page1[OFF_PAGE_COUNT..OFF_PAGE_COUNT + 4].copy_from_slice(&pages.to_be_bytes());
    page1[OFF_VERSION_VALID_FOR..OFF_VERSION_VALID_FOR + 4].copy_from_slice(&counter.to_be_bytes());
}

/// The change counter an apply writes after `current`: never equal to it.
pub fn next_counter(current: u32) -> u32 {
    current.wrapping_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page1(ps: u16) -> Vec<u8> {
        let mut p = vec![0u8; 512];
        p[..16].copy_from_slice(MAGIC);
        p[16..18].copy_from_slice(&ps.to_be_bytes());
        p[18] = WAL_MODE;
        p[19] = WAL_MODE;
        p[24..28].copy_from_slice(&7u32.to_be_bytes());
        p
    }

    #[test]
    fn patch_sets_mode_counter_size_and_valid_for() {
        let mut p = page1(4096);
        assert_eq!(change_counter(&p), 7);
        patch_for_replica(&mut p, next_counter(7), 42);
        assert_eq!((p[18], p[19]), (1, 1));
        assert_eq!(change_counter(&p), 8);
        assert_eq!(page_count(&p), 42);
        assert_eq!(be32(&p, OFF_VERSION_VALID_FOR), 8);
        assert_eq!(next_counter(u32::MAX), 0);
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(page_size(&page1(4096)), Some(4096));
        assert_eq!(page_size(&page1(1)), Some(65536));
        assert_eq!(page_size(&page1(1000)), None);
        assert_eq!(page_size(&[0u8; 100]), None);
    }
}

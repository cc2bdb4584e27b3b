//! Bounded reads of the small files this library keeps or shares (`lease.json`, `state.json`,
//! the follower's state records): never more than [`MAX_SMALL_FILE`] bytes in memory, whatever
//! the file (corrupt, hostile, or a 1 GiB sparse file) claims.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Largest small file read: a lease or a state record is a few hundred bytes of JSON; 16 KiB
/// leaves room for future fields and keeps a bad file from costing more than that in memory.
pub const MAX_SMALL_FILE: u64 = 16 * 1024;

/// Reads all of `path` if it holds at most `limit` bytes; `Ok(None)` if it does not exist, an
/// `InvalidData` error naming the file and the limit if it is larger (never read past it).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large(&path.display().to_string(), limit));
    }
    Ok(Some(data))
}

/// The error for a small file or object larger than `limit`.
pub fn too_large(what: &str, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{what} is larger than {limit} bytes, which no file written by litestream is; \
             it is corrupt or was written by something else: remove it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_files_and_refuses_large_ones_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(read_bounded(&small, 2).unwrap().unwrap(), b"{}");
        assert!(read_bounded(&dir.path().join("absent"), 2)
            .unwrap()
            .is_none());
        // A sparse file claiming 1 GiB: refused after reading limit + 1 bytes.
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let e = read_bounded(&big, MAX_SMALL_FILE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(msg.contains("big") && msg.contains("16384"), "{msg}");
    }
}

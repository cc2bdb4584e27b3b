//! Local copies of the L0 files this process uploaded to a remote replica, kept until an L1
//! merge covered them, so that the merge reads them from disk instead of downloading each one
//! (design: `docs/compaction.md`, "L1 merges read local copies"). Litestream's sidecar merges
//! from its local copies the same way.
//!
//! A copy is used only if the replica lists a file of the same name and size. The copies are
//! this process's own uploads, and between two reconciles it is the replica's only writer (the
//! lease, `docs/fencing.md`); the uploader clears the cache at every reconcile (process start,
//! lease takeover, chain restart), so a copy never stands in for another lineage's file. The
//! merge verifies every input's checksum whichever way it was read.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::staging::MetaDir;
use crate::TxId;

/// Most bytes of copies kept at once. The L0 files between two L1 merges (30 s by default)
/// are usually far smaller; a burst beyond this (a bulk load) is downloaded by the merge
/// instead, so that a big transaction does not keep a second copy on local disk.
pub const MAX_CACHED_BYTES: u64 = 64 * 1024 * 1024;

/// `<meta dir>/uploaded`: one `<min>-<max>.ltx` per kept copy.
pub struct L0Cache {
    dir: PathBuf,
}

impl L0Cache {
    pub fn new(meta: &MetaDir) -> L0Cache {
        L0Cache {
            dir: meta.root.join("uploaded"),
        }
    }

    fn path(&self, min: TxId, max: TxId) -> PathBuf {
        self.dir.join(crate::ltx::format_file_name(min, max))
    }

    fn entries(&self) -> Vec<(TxId, TxId, u64)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let (min, max) = crate::ltx::parse_file_name(e.file_name().to_str()?)?;
                Some((min, max, e.metadata().ok()?.len()))
            })
            .collect()
    }

    /// Moves the uploaded file `src` (`min`-`max`) into the cache, unless that would exceed
    /// [`MAX_CACHED_BYTES`]; then, or on any error, `src` is removed. Never fails: a missing
    /// copy only means a download later.
    pub fn keep(&self, src: &Path, min: TxId, max: TxId) {
        let size = fs::metadata(src).map_or(u64::MAX, |m| m.len());
        let cached: u64 = self.entries().iter().map(|e| e.2).sum();
        let kept = cached.saturating_add(size) <= MAX_CACHED_BYTES
            && fs::create_dir_all(&self.dir).is_ok()
            && fs::rename(src, self.path(min, max)).is_ok();
        if !kept {
            remove(src);
        }
    }

    /// The copy of `min`-`max`, if there is one of `size` bytes.
    pub fn open(&self, min: TxId, max: TxId, size: u64) -> Option<File> {
        let f = File::open(self.path(min, max)).ok()?;
        (f.metadata().ok()?.len() == size).then_some(f)
    }

    /// Removes the copies that end at or before `txid` (an L1 file now covers them).
    pub fn prune_through(&self, txid: TxId) {
        for (min, max, _) in self.entries() {
            if max <= txid {
                remove(&self.path(min, max));
            }
        }
    }

    /// Removes every copy.
    pub fn clear(&self) {
        self.prune_through(TxId::MAX);
    }
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a local L0 copy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, len: usize) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, vec![7u8; len]).unwrap();
        p
    }

    #[test]
    fn keeps_opens_by_size_prunes_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let cache = L0Cache::new(&MetaDir {
            root: dir.path().join("meta"),
        });
        for t in 1..=3 {
            let src = file(dir.path(), "up.ltx", 100 + t as usize);
            cache.keep(&src, t, t);
            assert!(!src.exists(), "moved, not copied");
        }
        assert!(cache.open(2, 2, 102).is_some());
        assert!(
            cache.open(2, 2, 999).is_none(),
            "another size is another file"
        );
        assert!(cache.open(4, 4, 104).is_none());
        cache.prune_through(2);
        assert!(cache.open(2, 2, 102).is_none());
        assert!(cache.open(3, 3, 103).is_some());
        cache.clear();
        assert!(cache.open(3, 3, 103).is_none());
    }

    #[test]
    fn a_file_that_would_exceed_the_bound_is_removed_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = L0Cache::new(&MetaDir {
            root: dir.path().join("meta"),
        });
        let big = dir.path().join("big.ltx");
        File::create(&big)
            .unwrap()
            .set_len(MAX_CACHED_BYTES + 1)
            .unwrap();
        cache.keep(&big, 1, 1);
        assert!(!big.exists());
        assert!(cache.open(1, 1, MAX_CACHED_BYTES + 1).is_none());
    }
}

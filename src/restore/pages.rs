//! Writing restored pages into the temp database file: contiguous runs are coalesced into
//! large positioned writes, and a bitset records which pages were provided.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// One bit per page number (bit 0 unused).
#[derive(Debug, Default, Clone)]
pub(crate) struct PageSet {
    words: Vec<u64>,
}

impl PageSet {
    pub fn insert(&mut self, pgno: u32) {
        let (w, b) = (pgno as usize / 64, pgno % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << b;
    }

    #[cfg(test)]
    pub fn contains(&self, pgno: u32) -> bool {
        let (w, b) = (pgno as usize / 64, pgno % 64);
        self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    /// The first page in `1..=commit`, other than `skip`, that is not in the set.
    pub fn first_missing(&self, commit: u32, skip: u32) -> Option<u32> {
        let last_word = commit as usize / 64;
        for w in 0..=last_word {
            let lo = (w as u64) * 64;
            let mut want = !0u64;
            if w == 0 {
                want &= !1; // page 0 does not exist
            }
            if w == last_word {
                let bits = u64::from(commit) - lo + 1; // 1..=64 bits wanted
                if bits < 64 {
                    want &= (1u64 << bits) - 1;
                }
            }
            if u64::from(skip) / 64 == w as u64 {
                want &= !(1u64 << (skip % 64));
            }
            let missing = want & !self.words.get(w).copied().unwrap_or(0);
            if missing != 0 {
                return Some((lo + u64::from(missing.trailing_zeros())) as u32);
            }
        }
        None
    }
}

/// Buffers a run of consecutive pages and writes it with one `pwrite`.
pub(crate) struct PageWriter<'f> {
    file: &'f File,
    page_size: usize,
    max_run: usize,
    run_start: u32,
    buf: Vec<u8>,
    pub written: PageSet,
}

/// Size of one coalesced write.
pub(crate) const RUN_BYTES: usize = 1 << 20;

impl<'f> PageWriter<'f> {
    pub fn new(file: &'f File, page_size: u32) -> Self {
        let page_size = page_size as usize;
        let max_run = (RUN_BYTES / page_size).max(1);
        PageWriter {
            file,
            page_size,
            max_run,
            run_start: 0,
            buf: Vec::with_capacity(max_run * page_size),
            written: PageSet::default(),
        }
    }

    fn run_len(&self) -> usize {
        self.buf.len() / self.page_size
    }

    /// Queues page `pgno`; pages of one file arrive in ascending order, later files may go
    /// back to lower numbers (the run is flushed first, so the later version wins).
    pub fn put(&mut self, pgno: u32, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), self.page_size);
        let continues = !self.buf.is_empty()
            && u64::from(pgno) == u64::from(self.run_start) + self.run_len() as u64;
        if !continues || self.run_len() >= self.max_run {
            self.flush()?;
            self.run_start = pgno;
        }
        self.buf.extend_from_slice(data);
        self.written.insert(pgno);
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let offset = (u64::from(self.run_start) - 1) * self.page_size as u64;
        self.file.write_all_at(&self.buf, offset)?;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_missing_basic() {
        let mut s = PageSet::default();
        assert_eq!(s.first_missing(0, 0), None);
        assert_eq!(s.first_missing(3, 0), Some(1));
        for p in 1..=200 {
            s.insert(p);
        }
        assert_eq!(s.first_missing(200, 0), None);
        assert_eq!(s.first_missing(201, 0), Some(201));
        assert_eq!(s.first_missing(201, 201), None);
        let mut t = PageSet::default();
        for p in (1..=130).filter(|p| *p != 64 && *p != 100) {
            t.insert(p);
        }
        assert_eq!(t.first_missing(130, 0), Some(64));
        assert_eq!(t.first_missing(130, 64), Some(100));
        assert_eq!(t.first_missing(99, 64), None);
    }

    #[test]
    fn lock_page_skip_at_real_offset() {
        // Page size 512: the lock page is 2097153, just past a word boundary.
        let lock = crate::ltx::lock_pgno(512);
        assert_eq!(lock, 2_097_153);
        let mut s = PageSet::default();
        for p in (1..=lock + 70).filter(|p| *p != lock) {
            s.insert(p);
        }
        assert_eq!(s.first_missing(lock + 70, lock), None);
        assert_eq!(s.first_missing(lock + 70, 0), Some(lock));
        assert_eq!(s.first_missing(lock + 71, lock), Some(lock + 71));
    }

    proptest! {
        #[test]
        fn first_missing_matches_naive(
            pages in prop::collection::btree_set(1u32..400, 0..400),
            commit in 0u32..420,
            skip in 0u32..420,
        ) {
            let mut s = PageSet::default();
            for p in &pages { s.insert(*p); }
            let naive = (1..=commit).find(|p| *p != skip && !pages.contains(p));
            prop_assert_eq!(s.first_missing(commit, skip), naive);
            for p in 0..420 { prop_assert_eq!(s.contains(p), pages.contains(&p)); }
        }

        #[test]
        fn writer_writes_latest_version(
            ops in prop::collection::vec(prop::collection::btree_set(1u32..40, 0..40), 1..5),
        ) {
            let f = tempfile::tempfile().unwrap();
            let mut w = PageWriter::new(&f, 512);
            w.max_run = 3; // exercise run splitting
            let mut want = vec![0u8; 40 * 512];
            for (gen, pages) in ops.iter().enumerate() {
                for p in pages {
                    let data = vec![(gen as u8) * 40 + *p as u8; 512];
                    want[(*p as usize - 1) * 512..*p as usize * 512].copy_from_slice(&data);
                    w.put(*p, &data).unwrap();
                }
            }
            w.flush().unwrap();
            let mut got = vec![0u8; 40 * 512];
            let n = f.read_at(&mut got, 0).unwrap();
            let len = ops.iter().flatten().max().map(|m| *m as usize * 512).unwrap_or(0);
            prop_assert_eq!(n, len);
            prop_assert_eq!(&got[..len], &want[..len]);
        }
    }
}

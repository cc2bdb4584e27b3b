//! Writing restored pages into the temp database file: contiguous runs are coalesced into
//! large positioned writes, and a set of page runs records which pages were provided.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The page numbers provided so far, as disjoint runs `start -> end` (inclusive). Memory grows
/// with the number of runs, never with the largest page number a file claims (a small hostile
/// snapshot naming page 0xFFFFFFFF costs one entry, not 512 MiB of bits).
#[derive(Debug, Default, Clone)]
pub(crate) struct PageSet {
    runs: BTreeMap<u32, u32>,
}

impl PageSet {
    pub fn insert(&mut self, pgno: u32) {
        let before = self.runs.range(..=pgno).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, end)) = before {
            if end >= pgno {
                return; // already there
            }
        }
        // Joins the run ending just below and the run starting just above, if any.
        let start = match before {
            Some((s, e)) if u64::from(e) + 1 == u64::from(pgno) => s,
            _ => pgno,
        };
        let end = match pgno.checked_add(1).and_then(|n| self.runs.remove(&n)) {
            Some(e) => e,
            None => pgno,
        };
        self.runs.insert(start, end);
    }

    #[cfg(test)]
    pub fn contains(&self, pgno: u32) -> bool {
        self.runs
            .range(..=pgno)
            .next_back()
            .is_some_and(|(_, &e)| e >= pgno)
    }

    #[cfg(test)]
    fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The first page in `1..=commit`, other than `skip`, that is not in the set.
    pub fn first_missing(&self, commit: u32, skip: u32) -> Option<u32> {
        // The first uncovered page at or after `from`, stepping over `skip`, if <= commit.
        let gap = |from: u64, until: u64| -> Option<u32> {
            (from..until.min(u64::from(commit) + 1))
                .find(|&p| p != u64::from(skip))
                .map(|p| p as u32)
        };
        let mut next = 1u64; // every page below is covered (or is `skip`)
        for (&s, &e) in &self.runs {
            if let Some(p) = gap(next, u64::from(s)) {
                return Some(p);
            }
            if next > u64::from(commit) {
                return None;
            }
            next = next.max(u64::from(e) + 1);
        }
        gap(next, u64::from(commit) + 1)
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

    #[test]
    fn huge_page_numbers_cost_one_run() {
        let mut s = PageSet::default();
        for p in [1, 2, 3, u32::MAX, u32::MAX - 1, 1 << 31] {
            s.insert(p);
        }
        assert_eq!(s.run_count(), 3);
        assert_eq!(s.first_missing(u32::MAX, 0), Some(4));
        assert_eq!(s.first_missing(3, 0), None);
        assert_eq!(s.first_missing(u32::MAX, 4), Some(5));
        assert!(s.contains(u32::MAX) && !s.contains(u32::MAX - 2));
    }

    proptest! {
        #[test]
        fn first_missing_matches_naive(
            pages in prop::collection::vec(1u32..400, 0..400),
            commit in 0u32..420,
            skip in 0u32..420,
        ) {
            let mut s = PageSet::default();
            // Any insertion order (later files go back to lower pages).
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

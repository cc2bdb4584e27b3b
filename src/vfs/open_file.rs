//! The replication rules of one file SQLite opened through our VFS: which io-method calls
//! are events for the managed database, and which event each one is. The trampolines in
//! `crate::ffi::vfs_shim` keep one [`OpenFile`] per file and call its methods before forwarding;
//! every decision is here, in safe code, tested against a recording [`FileEvents`].

use crate::capture::WalIndexMark;

/// `xFileControl` op sent after a commit's WAL frames are written (sqlite3.h).
pub const FCNTL_COMMIT_PHASETWO: i32 = 22;

/// The WAL write lock (shm lock slot 0) and the `xShmLock` flags of releasing it (sqlite3.h).
pub const WAL_WRITE_LOCK: i32 = 0;
pub const SHM_UNLOCK: i32 = 1;
pub const SHM_EXCLUSIVE: i32 = 8;

/// Bytes of the wal-index header the commit mark is read from (the first copy of it).
pub const WAL_INDEX_HEADER_BYTES: usize = 48;

/// True when an `xShmLock` call ends a write transaction: the commit point we capture at.
pub fn is_write_lock_release(offset: i32, n: i32, flags: i32) -> bool {
    offset == WAL_WRITE_LOCK && n == 1 && flags == (SHM_UNLOCK | SHM_EXCLUSIVE)
}

/// What the managed database is told about its files (implemented by
/// `Arc<crate::database::Database>`; by a recorder in tests).
pub trait FileEvents {
    /// A main-database handle is about to be opened.
    fn handle_opened(&self);
    /// A main-database handle was closed.
    fn handle_closed(&self);
    /// A transaction committed; `mark` is the wal-index header's mark when the shm is mapped.
    fn on_commit(&self, mark: Option<WalIndexMark>);
    /// SQLite is about to write a new WAL header or truncate the WAL to zero.
    fn before_wal_reset(&self);
}

/// The part one open file plays.
enum Part<D> {
    Main(D),
    Wal(D),
    Other,
}

/// One file SQLite opened through our VFS, as replication sees it.
pub struct OpenFile<D: FileEvents> {
    part: Part<D>,
    /// This main-db handle has mapped the shm (normal WAL locking); without it, commits are
    /// detected at [`FCNTL_COMMIT_PHASETWO`] (exclusive locking mode keeps the wal-index in
    /// heap memory, so there is no shm lock release to capture at).
    uses_shm: bool,
}

impl<D: FileEvents> OpenFile<D> {
    /// A file that passes through untouched.
    pub fn other() -> Self {
        OpenFile {
            part: Part::Other,
            uses_shm: false,
        }
    }

    /// The main database file of a managed database: counts as an open handle until
    /// [`OpenFile::closed`].
    pub fn main(db: D) -> Self {
        db.handle_opened();
        OpenFile {
            part: Part::Main(db),
            uses_shm: false,
        }
    }

    /// The `-wal` of a managed database.
    pub fn wal(db: D) -> Self {
        OpenFile {
            part: Part::Wal(db),
            uses_shm: false,
        }
    }

    /// The managed database of a main file (for its pragmas).
    pub fn main_database(&self) -> Option<&D> {
        match &self.part {
            Part::Main(db) => Some(db),
            _ => None,
        }
    }

    /// Before `xWrite`: a write at offset 0 of the WAL is a new WAL header, so the previous
    /// generation is fully checkpointed and about to be overwritten.
    pub fn before_write(&self, offset: i64) {
        if let (Part::Wal(db), 0) = (&self.part, offset) {
            db.before_wal_reset();
        }
    }

    /// Before `xTruncate`: only a truncation to zero ends a generation; `journal_size_limit`
    /// trims the file behind the live frames of the current one.
    pub fn before_truncate(&self, size: i64) {
        if let (Part::Wal(db), 0) = (&self.part, size) {
            db.before_wal_reset();
        }
    }

    /// After a successful `xShmMap`: this handle uses the shared wal-index.
    pub fn shm_mapped(&mut self) {
        self.uses_shm = true;
    }

    /// Before `xFileControl`: in exclusive locking mode the commit is complete at
    /// `COMMIT_PHASETWO`.
    pub fn before_file_control(&self, op: i32) {
        if op != FCNTL_COMMIT_PHASETWO || self.uses_shm {
            return;
        }
        if let Part::Main(db) = &self.part {
            db.on_commit(None);
        }
    }

    /// Before `xShmLock`: releasing the WAL write lock is the commit point. The connection
    /// still holds the lock, so no other writer touches the WAL while it is read, and the
    /// wal-index header already records the commit; `header` reads that header (`None`
    /// while the shm is not mapped).
    pub fn before_shm_lock(
        &self,
        offset: i32,
        n: i32,
        flags: i32,
        header: impl FnOnce() -> Option<[u8; WAL_INDEX_HEADER_BYTES]>,
    ) {
        let Part::Main(db) = &self.part else {
            return;
        };
        if is_write_lock_release(offset, n, flags) {
            db.on_commit(header().and_then(|h| WalIndexMark::parse(&h)));
        }
    }

    /// `xClose` (or a failed `xOpen`): the handle is gone.
    pub fn closed(self) {
        if let Part::Main(db) = self.part {
            db.handle_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Opened,
        Closed,
        Commit(Option<u32>),
        Reset,
    }

    #[derive(Clone, Default)]
    struct Recorder(Rc<RefCell<Vec<Ev>>>);

    impl FileEvents for Recorder {
        fn handle_opened(&self) {
            self.0.borrow_mut().push(Ev::Opened);
        }
        fn handle_closed(&self) {
            self.0.borrow_mut().push(Ev::Closed);
        }
        fn on_commit(&self, mark: Option<WalIndexMark>) {
            self.0
                .borrow_mut()
                .push(Ev::Commit(mark.map(|m| m.max_frame)));
        }
        fn before_wal_reset(&self) {
            self.0.borrow_mut().push(Ev::Reset);
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Ev> {
            std::mem::take(&mut self.0.borrow_mut())
        }
    }

    const RELEASE: i32 = SHM_UNLOCK | SHM_EXCLUSIVE;

    #[test]
    fn write_lock_release_detection() {
        assert!(is_write_lock_release(0, 1, RELEASE));
        assert!(!is_write_lock_release(0, 1, SHM_UNLOCK | 4)); // shared unlock
        assert!(!is_write_lock_release(1, 1, RELEASE)); // checkpointer lock
        assert!(!is_write_lock_release(0, 1, 2 | SHM_EXCLUSIVE)); // lock, not unlock
    }

    #[test]
    fn main_file_counts_handles_and_commits_at_the_write_lock_release() {
        let rec = Recorder::default();
        let mut f = OpenFile::main(rec.clone());
        assert_eq!(rec.take(), [Ev::Opened]);
        f.shm_mapped();
        f.before_shm_lock(1, 1, RELEASE, || panic!("not a write-lock release"));
        f.before_shm_lock(0, 1, SHM_UNLOCK | 4, || panic!("a shared unlock"));
        assert!(rec.take().is_empty());
        // No header (shm not mapped yet) or a header that does not parse: a commit, no mark.
        f.before_shm_lock(0, 1, RELEASE, || None);
        f.before_shm_lock(0, 1, RELEASE, || Some([0; WAL_INDEX_HEADER_BYTES]));
        let mut hdr = [0; WAL_INDEX_HEADER_BYTES];
        hdr[12] = 1; // isInit
        hdr[16..20].copy_from_slice(&7u32.to_ne_bytes()); // mxFrame
        f.before_shm_lock(0, 1, RELEASE, || Some(hdr));
        assert_eq!(
            rec.take(),
            [Ev::Commit(None), Ev::Commit(None), Ev::Commit(Some(7))]
        );
        // Writes and truncations of the main file are not WAL resets.
        f.before_write(0);
        f.before_truncate(0);
        // With the shm mapped, COMMIT_PHASETWO is not the commit point.
        f.before_file_control(FCNTL_COMMIT_PHASETWO);
        assert!(rec.take().is_empty());
        f.closed();
        assert_eq!(rec.take(), [Ev::Closed]);
    }

    #[test]
    fn exclusive_locking_mode_commits_at_phase_two() {
        let rec = Recorder::default();
        let f = OpenFile::main(rec.clone());
        rec.take();
        f.before_file_control(FCNTL_COMMIT_PHASETWO);
        f.before_file_control(FCNTL_COMMIT_PHASETWO + 1);
        assert_eq!(rec.take(), [Ev::Commit(None)]);
        assert!(f.main_database().is_some());
    }

    #[test]
    fn wal_file_resets_on_a_header_write_or_a_truncation_to_zero() {
        let rec = Recorder::default();
        let f = OpenFile::wal(rec.clone());
        f.before_write(32 + 24 + 4096); // a frame
        f.before_truncate(4096 * 10); // journal_size_limit trims behind live frames
        assert!(rec.take().is_empty());
        f.before_write(0);
        f.before_truncate(0);
        assert_eq!(rec.take(), [Ev::Reset, Ev::Reset]);
        // A WAL handle is never a commit point nor a counted handle.
        f.before_shm_lock(0, 1, RELEASE, || None);
        f.before_file_control(FCNTL_COMMIT_PHASETWO);
        assert!(f.main_database().is_none());
        f.closed();
        assert!(rec.take().is_empty());
    }

    #[test]
    fn other_files_pass_through() {
        let f: OpenFile<Recorder> = OpenFile::other();
        f.before_write(0);
        f.before_truncate(0);
        f.before_shm_lock(0, 1, RELEASE, || panic!("must not read"));
        f.before_file_control(FCNTL_COMMIT_PHASETWO);
        f.closed();
    }
}

use std::cell::Cell;

use super::*;
use crate::follower::batch::PageSpool;
use crate::follower::journal::plan_rollback;

const PS: u32 = 512;

/// An in-memory database file with scriptable competitors: `readers` hold SHARED locks until
/// `readers_leave_after` EXCLUSIVE attempts were refused; `fail_writes_after` makes a database
/// write fail (a crash stand-in).
struct FakeFile {
    data: Vec<u8>,
    level: LockLevel,
    readers: u32,
    readers_leave_after: Option<u32>,
    exclusive_refusals: u32,
    other_writer: bool,
    fail_writes_after: Option<usize>,
    writes: Cell<usize>,
}

impl FakeFile {
    fn new(data: Vec<u8>) -> FakeFile {
        FakeFile {
            data,
            level: LockLevel::None,
            readers: 0,
            readers_leave_after: None,
            exclusive_refusals: 0,
            other_writer: false,
            fail_writes_after: None,
            writes: Cell::new(0),
        }
    }

    fn page(&self, pgno: u32) -> &[u8] {
        let s = (pgno as usize - 1) * PS as usize;
        &self.data[s..s + PS as usize]
    }
}

impl DbFile for FakeFile {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        assert!(self.level >= LockLevel::Shared, "read without a lock");
        buf.fill(0);
        let off = off as usize;
        if off < self.data.len() {
            let n = buf.len().min(self.data.len() - off);
            buf[..n].copy_from_slice(&self.data[off..off + n]);
        }
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        assert_eq!(self.level, LockLevel::Exclusive, "write without EXCLUSIVE");
        let n = self.writes.get();
        if self.fail_writes_after == Some(n) {
            self.fail_writes_after = None;
            return Err(io::Error::other("injected write failure"));
        }
        self.writes.set(n + 1);
        let off = off as usize;
        if self.data.len() < off + buf.len() {
            self.data.resize(off + buf.len(), 0);
        }
        self.data[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
    fn truncate(&mut self, size: u64) -> io::Result<()> {
        assert_eq!(self.level, LockLevel::Exclusive);
        self.data.resize(size as usize, 0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn lock(&mut self, level: LockLevel) -> io::Result<bool> {
        match level {
            LockLevel::Shared => {}
            LockLevel::Reserved if self.other_writer => return Ok(false),
            LockLevel::Exclusive if self.readers > 0 => {
                self.exclusive_refusals += 1;
                if self.readers_leave_after == Some(self.exclusive_refusals) {
                    self.readers = 0;
                }
                return Ok(false);
            }
            _ => {}
        }
        self.level = self.level.max(level);
        Ok(true)
    }
    fn unlock(&mut self, level: LockLevel) -> io::Result<()> {
        self.level = level;
        Ok(())
    }
    fn sector_size(&mut self) -> u32 {
        512
    }
}

/// A database of `pages` pages: page 1 has a valid header (change counter `counter`, WAL
/// mode as a primary has it); page `n` is filled with `fill + n`.
fn db(pages: u32, fill: u8, counter: u32) -> Vec<u8> {
    let mut d = Vec::new();
    for n in 1..=pages {
        d.extend(std::iter::repeat_n(fill.wrapping_add(n as u8), PS as usize));
    }
    d[..16].copy_from_slice(dbheader::MAGIC);
    d[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
    d[18] = 2;
    d[19] = 2;
    d[24..28].copy_from_slice(&counter.to_be_bytes());
    d
}

struct Env {
    dir: tempfile::TempDir,
    meta: MetaFiles,
    policy: LockPolicy,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaFiles::for_db(&dir.path().join("r.db"));
        meta.create().unwrap();
        let policy = LockPolicy {
            shared_wait: Duration::ZERO,
            drain_wait: Duration::from_millis(5),
            escalate_after: Duration::from_secs(60),
            escalated_drain_wait: Duration::from_millis(5),
            ..LockPolicy::default()
        };
        Env { dir, meta, policy }
    }

    fn journal(&self) -> std::path::PathBuf {
        self.dir.path().join("r.db-journal")
    }

    fn ctx(&self) -> ApplyContext<'_> {
        ApplyContext {
            journal_path: Box::leak(self.journal().into_boxed_path()),
            meta: &self.meta,
            replica: "file:///replica",
            policy: &self.policy,
            deferred_for: Duration::ZERO,
        }
    }

    fn record(&self, txid: TxId, counter: u32) {
        self.meta
            .save(&FollowerState {
                replica: "file:///replica".into(),
                txid,
                counter,
                pending: None,
            })
            .unwrap();
    }

    fn batch(&self, range: (TxId, TxId), commit: u32, pages: &[(u32, u8)]) -> Batch {
        let mut spool = PageSpool::new(self.dir.path(), PS).unwrap();
        for &(pgno, fill) in pages {
            let mut p = vec![fill; PS as usize];
            if pgno == 1 {
                p[..100].copy_from_slice(&db(1, 0, 99)[..100]);
            }
            spool.put(pgno, &p).unwrap();
        }
        Batch {
            first_min: range.0,
            txid: range.1,
            page_size: PS,
            commit,
            full: range.0 == 1,
            files: 1,
            pages: spool,
        }
    }
}

fn counter_of(f: &FakeFile) -> u32 {
    dbheader::change_counter(f.page(1))
}

#[test]
fn applies_changed_pages_grows_and_records_the_txid() {
    let env = Env::new();
    let mut f = FakeFile::new(db(3, 10, 7));
    env.record(1, 7);
    // Page 3 is sent unchanged (as a compaction would): it is not rewritten.
    let unchanged = f.page(3)[0];
    let b = env.batch((2, 2), 4, &[(2, 0xb2), (3, unchanged), (4, 0xb4)]);
    let out = apply(&mut f, &env.ctx(), &b).unwrap();
    assert_eq!(out, Outcome::Applied { txid: 2, pages: 3 }, "pages 1, 2, 4");
    assert_eq!(f.data.len(), 4 * PS as usize);
    assert_eq!(f.page(2), &[0xb2; PS as usize][..]);
    assert_eq!(f.page(4), &[0xb4; PS as usize][..]);
    let p1 = f.page(1);
    assert_eq!((p1[18], p1[19]), (1, 1), "rollback-journal mode");
    assert_eq!(counter_of(&f), 8);
    assert_eq!(dbheader::page_count(p1), 4);
    let st = env.meta.load().unwrap().unwrap();
    assert_eq!((st.txid, st.counter, st.pending), (2, 8, None));
    assert!(!env.journal().exists(), "the journal is deleted at commit");
    assert_eq!(f.level, LockLevel::None, "locks released");
}

#[test]
fn shrink_truncates_and_already_applied_is_a_no_op() {
    let env = Env::new();
    let mut f = FakeFile::new(db(5, 1, 3));
    env.record(4, 3);
    let b = env.batch((5, 6), 2, &[(2, 9)]);
    assert_eq!(
        apply(&mut f, &env.ctx(), &b).unwrap(),
        Outcome::Applied { txid: 6, pages: 2 }
    );
    assert_eq!(f.data.len(), 2 * PS as usize);
    let before = f.data.clone();
    assert_eq!(
        apply(&mut f, &env.ctx(), &b).unwrap(),
        Outcome::AlreadyAt(6)
    );
    assert_eq!(f.data, before);
    // A batch starting after a gap is refused with the position to plan from.
    let gap = env.batch((9, 9), 2, &[(2, 1)]);
    assert_eq!(
        apply(&mut f, &env.ctx(), &gap).unwrap(),
        Outcome::Replan { at: 6 }
    );
}

#[test]
fn unknown_state_needs_a_full_batch() {
    let env = Env::new();
    let mut f = FakeFile::new(db(3, 1, 3));
    env.record(4, 99); // counter does not match: someone else wrote the file
    let b = env.batch((5, 5), 3, &[(2, 9)]);
    assert!(matches!(
        apply(&mut f, &env.ctx(), &b).unwrap(),
        Outcome::Unknown(_)
    ));
    // A rebase (full batch) replaces everything; here the database shrinks to 2 pages.
    let full = env.batch((1, 8), 2, &[(1, 0), (2, 0x22)]);
    assert_eq!(
        apply(&mut f, &env.ctx(), &full).unwrap(),
        Outcome::Applied { txid: 8, pages: 2 }
    );
    assert_eq!(f.data.len(), 2 * PS as usize);
    assert_eq!(env.meta.load().unwrap().unwrap().txid, 8);
}

#[test]
fn missing_growth_page_is_an_error_and_changes_nothing() {
    let env = Env::new();
    let mut f = FakeFile::new(db(2, 1, 3));
    env.record(1, 3);
    let before = f.data.clone();
    let b = env.batch((2, 2), 4, &[(4, 4)]);
    let err = apply(&mut f, &env.ctx(), &b).unwrap_err();
    assert!(
        matches!(err, FollowError::MissingPage { pgno: 3, .. }),
        "{err}"
    );
    assert_eq!(f.data, before);
    assert!(!env.journal().exists());
}

#[test]
fn readers_that_stay_defer_the_apply_without_a_trace() {
    let env = Env::new();
    let mut f = FakeFile::new(db(3, 1, 3));
    f.readers = 1;
    env.record(1, 3);
    let before = f.data.clone();
    let b = env.batch((2, 2), 3, &[(2, 7)]);
    let out = apply(&mut f, &env.ctx(), &b).unwrap();
    assert!(matches!(out, Outcome::Deferred(_)), "{out:?}");
    assert_eq!(f.data, before);
    assert!(!env.journal().exists(), "no journal while deferred");
    assert_eq!(f.level, LockLevel::None);
    assert_eq!(env.meta.load().unwrap().unwrap().txid, 1);
    // Readers that finish within the drain window let the apply through.
    // (A long window: the readers leave after two refused attempts, however slow the machine.)
    f.readers_leave_after = Some(f.exclusive_refusals + 2);
    let patient = LockPolicy {
        drain_wait: Duration::from_secs(30),
        ..env.policy.clone()
    };
    let ctx = ApplyContext {
        policy: &patient,
        ..env.ctx()
    };
    assert_eq!(
        apply(&mut f, &ctx, &b).unwrap(),
        Outcome::Applied { txid: 2, pages: 2 }
    );
    // Another writer holding RESERVED defers too.
    f.other_writer = true;
    let b3 = env.batch((3, 3), 3, &[(2, 8)]);
    assert!(matches!(
        apply(&mut f, &env.ctx(), &b3).unwrap(),
        Outcome::Deferred(_)
    ));
}

#[test]
fn failed_write_is_rolled_back_at_once() {
    let env = Env::new();
    let mut f = FakeFile::new(db(4, 1, 3));
    env.record(1, 3);
    let before = f.data.clone();
    f.fail_writes_after = Some(2); // page 1 and 2 written, then the failure
    let b = env.batch((2, 2), 5, &[(2, 7), (3, 7), (5, 7)]);
    assert!(apply(&mut f, &env.ctx(), &b).is_err());
    assert_eq!(
        f.data, before,
        "the journal restored every page and the size"
    );
    assert!(!env.journal().exists());
    let st = env.meta.load().unwrap().unwrap();
    assert_eq!(st.txid_for_counter(counter_of(&f)), Some(1));
}

#[test]
fn hot_journal_from_a_crash_is_rolled_back_before_the_next_apply() {
    let env = Env::new();
    let original = db(3, 1, 3);
    let mut f = FakeFile::new(original.clone());
    env.record(1, 3);
    // A crash mid-apply: journal written, page 2 and the size already changed.
    let b = env.batch((2, 2), 4, &[(2, 7), (4, 7)]);
    f.level = LockLevel::Exclusive;
    let view = read_view(&mut f).unwrap().unwrap();
    let changed = changed_pages(&mut f, &b, &view).unwrap();
    write_journal(&mut f, &env.journal(), &changed, &view, PS).unwrap();
    f.write_at(&[0xee; PS as usize], u64::from(PS)).unwrap();
    f.write_at(&[0xee; PS as usize], 3 * u64::from(PS)).unwrap();
    f.level = LockLevel::None;
    // The journal is what SQLite would play back.
    let j = fs::read(env.journal()).unwrap();
    let plan = plan_rollback(j.len() as u64, |o, b| {
        b.copy_from_slice(&j[o as usize..o as usize + b.len()]);
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(plan.original_pages, 3);
    assert_eq!(
        plan.pages.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2]
    );

    assert!(recover(&mut f, &env.journal(), &env.policy).unwrap());
    assert_eq!(f.data, original);
    assert!(!env.journal().exists());
    // And the apply then proceeds normally.
    assert_eq!(
        apply(&mut f, &env.ctx(), &b).unwrap(),
        Outcome::Applied { txid: 2, pages: 3 }
    );
}

#[test]
fn decide_table() {
    assert_eq!(decide(Some(5), (6, 7), false), None);
    assert_eq!(
        decide(Some(5), (3, 7), false),
        None,
        "overlapping compaction"
    );
    assert_eq!(decide(Some(5), (2, 5), false), Some(Outcome::AlreadyAt(5)));
    assert_eq!(
        decide(Some(5), (7, 8), false),
        Some(Outcome::Replan { at: 5 })
    );
    assert!(matches!(
        decide(None, (6, 7), false),
        Some(Outcome::Unknown(_))
    ));
    assert_eq!(decide(None, (1, 7), true), None);
    assert_eq!(
        decide(Some(9), (1, 7), true),
        None,
        "rebase to an older chain"
    );
}

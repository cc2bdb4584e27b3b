//! Tests against the real SQLite (`libsqlite3.so.0`, loaded with dlopen): lock coordination with
//! connections in this process, and SQLite itself rolling back a journal the follower wrote.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::follower::apply_batch::{apply, recover, ApplyContext, Outcome};
use crate::follower::batch::{Batch, PageSpool};
use crate::follower::dbheader;
use crate::follower::lock::LockPolicy;
use crate::follower::state::{FollowerState, MetaFiles};

/// A plain SQLite connection of the dlopen'ed library (the API table of the extension is not
/// set up in unit tests), with a busy timeout; errors as SQLite's message.
pub(crate) struct TestConn(crate::ffi::sqlite_lib::LibConn);

impl TestConn {
    pub(crate) fn open(path: &Path) -> TestConn {
        let conn = crate::ffi::sqlite_lib::LibConn::open(path, false)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let conn = TestConn(conn);
        conn.exec("PRAGMA busy_timeout=5000").unwrap();
        conn
    }

    /// Runs `sql`; returns the rows as `a|b|c` strings, or SQLite's error message.
    pub(crate) fn exec(&self, sql: &str) -> Result<Vec<String>, String> {
        self.0.exec(sql).map_err(|e| match e {
            crate::ffi::sqlite_lib::LibSqlError::Sqlite { message, .. } => message,
            other => other.to_string(),
        })
    }
}

fn policy() -> LockPolicy {
    LockPolicy {
        shared_wait: Duration::from_millis(200),
        drain_wait: Duration::from_millis(50),
        escalated_drain_wait: Duration::from_millis(50),
        ..LockPolicy::default()
    }
}

/// A rollback-mode database with a table of 200 rows.
fn make_db(path: &Path) {
    let c = TestConn::open(path);
    c.exec(
        "PRAGMA page_size=1024; PRAGMA journal_mode=DELETE;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<200)
         INSERT INTO t(v) SELECT printf('row-%d-%s', x, hex(randomblob(40))) FROM n;",
    )
    .unwrap();
}

/// The pages of `new` that differ from `old`, as a batch that brings `old` to `new`.
fn diff_batch(old: &Path, new: &Path, spool_dir: &Path) -> Batch {
    let (a, b) = (fs::read(old).unwrap(), fs::read(new).unwrap());
    let ps = dbheader::page_size(&b).unwrap() as usize;
    let mut spool = PageSpool::new(spool_dir, ps as u32).unwrap();
    for (i, page) in b.chunks(ps).enumerate() {
        if a.get(i * ps..(i + 1) * ps) != Some(page) {
            spool.put(i as u32 + 1, page).unwrap();
        }
    }
    Batch {
        first_min: 2,
        txid: 2,
        page_size: ps as u32,
        commit: (b.len() / ps) as u32,
        full: false,
        files: 1,
        pages: spool,
    }
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
        Env {
            dir,
            meta,
            policy: policy(),
        }
    }
    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("r.db")
    }
    fn journal(&self) -> std::path::PathBuf {
        let mut s = full_pathname(&self.db()).unwrap().into_os_string();
        s.push("-journal");
        s.into()
    }
    /// The replica `r.db` (state: TXID 1) and `next.db`, the primary's next state.
    fn setup(&self, change: &str) -> Batch {
        make_db(&self.db());
        let next = self.dir.path().join("next.db");
        fs::copy(self.db(), &next).unwrap();
        TestConn::open(&next).exec(change).unwrap();
        let counter = dbheader::change_counter(&fs::read(self.db()).unwrap());
        self.meta
            .save(&FollowerState {
                replica: "file:///r".into(),
                txid: 1,
                counter,
                pending: None,
            })
            .unwrap();
        diff_batch(&self.db(), &next, self.dir.path())
    }
}

fn ctx<'a>(env: &'a Env, journal: &'a Path) -> ApplyContext<'a> {
    ApplyContext {
        journal_path: journal,
        meta: &env.meta,
        replica: "file:///r",
        policy: &env.policy,
        deferred_for: Duration::ZERO,
    }
}

#[test]
fn open_requires_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(OsFile::open(&dir.path().join("missing.db")).is_err());
}

#[test]
fn locks_are_coordinated_with_connections_in_this_process() {
    let env = Env::new();
    make_db(&env.db());
    let reader = TestConn::open(&env.db());
    reader.exec("BEGIN; SELECT count(*) FROM t;").unwrap();
    let mut f = OsFile::open(&env.db()).unwrap();
    assert!(f.lock(LockLevel::Shared).unwrap());
    assert!(f.lock(LockLevel::Reserved).unwrap());
    assert!(
        !f.lock(LockLevel::Exclusive).unwrap(),
        "a reader holds SHARED"
    );
    // While we hold PENDING, a new reader cannot start (it gets SQLITE_BUSY after its timeout).
    let late = TestConn::open(&env.db());
    late.exec("PRAGMA busy_timeout=0").unwrap();
    assert!(late.exec("SELECT count(*) FROM t").is_err());
    reader.exec("COMMIT").unwrap();
    assert!(f.lock(LockLevel::Exclusive).unwrap());
    f.unlock(LockLevel::None).unwrap();
    assert_eq!(late.exec("SELECT count(*) FROM t").unwrap(), vec!["200"]);
}

#[test]
fn applied_batch_is_seen_by_an_open_connection_and_passes_integrity_check() {
    let env = Env::new();
    let batch = env.setup(
        "UPDATE t SET v = 'changed' WHERE id % 7 = 0; DELETE FROM t WHERE id > 150;
         CREATE TABLE u(x); INSERT INTO u VALUES (42);",
    );
    let reader = TestConn::open(&env.db());
    assert_eq!(reader.exec("SELECT count(*) FROM t").unwrap(), vec!["200"]);
    let mut f = OsFile::open(&env.db()).unwrap();
    let journal = env.journal();
    let out = apply(&mut f, &ctx(&env, &journal), &batch).unwrap();
    assert!(matches!(out, Outcome::Applied { txid: 2, .. }), "{out:?}");
    // The connection opened before the apply drops its cache (change counter) and sees the
    // new state, including the new schema.
    assert_eq!(reader.exec("SELECT count(*) FROM t").unwrap(), vec!["150"]);
    assert_eq!(
        reader
            .exec("SELECT count(*) FROM t WHERE v = 'changed'")
            .unwrap(),
        vec!["21"]
    );
    assert_eq!(reader.exec("SELECT x FROM u").unwrap(), vec!["42"]);
    assert_eq!(reader.exec("PRAGMA integrity_check").unwrap(), vec!["ok"]);
    assert_eq!(reader.exec("PRAGMA journal_mode").unwrap(), vec!["delete"]);
    assert!(!journal.exists());
}

/// Lets a fixed number of database writes through, then fails every write and truncate (a
/// crash: the follower cannot even roll back, so the journal stays hot).
struct CrashAfter {
    inner: OsFile,
    writes_left: usize,
}

impl DbFile for CrashAfter {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.writes_left == 0 {
            return Err(io::Error::other("crashed"));
        }
        self.writes_left -= 1;
        self.inner.write_at(buf, off)
    }
    fn size(&mut self) -> io::Result<u64> {
        self.inner.size()
    }
    fn truncate(&mut self, size: u64) -> io::Result<()> {
        if self.writes_left == 0 {
            return Err(io::Error::other("crashed"));
        }
        self.inner.truncate(size)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn lock(&mut self, level: LockLevel) -> io::Result<bool> {
        self.inner.lock(level)
    }
    fn unlock(&mut self, level: LockLevel) -> io::Result<()> {
        self.inner.unlock(level)
    }
    fn sector_size(&mut self) -> u32 {
        self.inner.sector_size()
    }
}

#[test]
fn sqlite_rolls_back_a_journal_left_by_a_crashed_apply() {
    let env = Env::new();
    let batch = env.setup(
        "UPDATE t SET v = upper(v); INSERT INTO t(v) SELECT v FROM t; CREATE INDEX i ON t(v);",
    );
    let before = TestConn::open(&env.db())
        .exec("SELECT count(*), sum(length(v)), max(v) FROM t")
        .unwrap();
    let journal = env.journal();
    let mut f = CrashAfter {
        inner: OsFile::open(&env.db()).unwrap(),
        writes_left: 5,
    };
    assert!(apply(&mut f, &ctx(&env, &journal), &batch).is_err());
    drop(f);
    assert!(journal.exists(), "the crash leaves a hot journal");
    // Plain SQLite opening the database plays the journal back.
    let c = TestConn::open(&env.db());
    assert_eq!(
        c.exec("SELECT count(*), sum(length(v)), max(v) FROM t")
            .unwrap(),
        before
    );
    assert_eq!(c.exec("PRAGMA integrity_check").unwrap(), vec!["ok"]);
    assert!(
        !journal.exists(),
        "SQLite deleted the journal after the rollback"
    );
    drop(c);
    // The follower then applies the batch normally.
    let mut f = OsFile::open(&env.db()).unwrap();
    let out = apply(&mut f, &ctx(&env, &journal), &batch).unwrap();
    assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
    let c = TestConn::open(&env.db());
    assert_eq!(c.exec("SELECT count(*) FROM t").unwrap(), vec!["400"]);
    assert_eq!(c.exec("PRAGMA integrity_check").unwrap(), vec!["ok"]);
}

#[test]
fn follower_rolls_back_a_crashed_apply_itself() {
    let env = Env::new();
    let batch = env.setup("DELETE FROM t WHERE id < 100; VACUUM;");
    let before = fs::read(env.db()).unwrap();
    let journal = env.journal();
    let mut f = CrashAfter {
        inner: OsFile::open(&env.db()).unwrap(),
        writes_left: 2,
    };
    assert!(apply(&mut f, &ctx(&env, &journal), &batch).is_err());
    drop(f);
    let mut f = OsFile::open(&env.db()).unwrap();
    assert!(recover(&mut f, &journal, &env.policy).unwrap());
    assert_eq!(fs::read(env.db()).unwrap(), before);
    assert!(!journal.exists());
}

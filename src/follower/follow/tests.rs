use std::collections::BTreeMap;

use super::*;
use crate::ffi::osfile::tests::TestConn;
use crate::follower::dbheader;
use crate::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use crate::replica::counting::Counting;
use crate::replica::FileReplica;

/// A primary simulated with real SQLite: each step runs SQL on `primary.db` and stores the
/// changed pages as an LTX file.
struct Env {
    dir: tempfile::TempDir,
    client: Arc<Counting>,
    prev: Vec<u8>,
    txid: TxId,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let client = Arc::new(Counting::new(FileReplica::new(dir.path().join("replica"))));
        let c = TestConn::open(&dir.path().join("primary.db"));
        c.exec("PRAGMA page_size=1024; PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        drop(c);
        Env {
            dir,
            client,
            prev: Vec::new(),
            txid: 0,
        }
    }

    fn primary(&self) -> PathBuf {
        self.dir.path().join("primary.db")
    }

    fn local(&self) -> PathBuf {
        self.dir.path().join("local.db")
    }

    /// Runs `sql` on the primary and ships the changed pages as the next TXID at `level`
    /// (L0 unless given).
    fn step(&mut self, sql: &str) -> TxId {
        let c = TestConn::open(&self.primary());
        c.exec(sql).unwrap();
        c.exec("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        drop(c);
        let now = fs::read(self.primary()).unwrap();
        self.txid += 1;
        let pages = changed_pages(&self.prev, &now, self.txid == 1);
        self.write_ltx(0, self.txid, self.txid, &now, &pages);
        self.prev = now;
        self.txid
    }

    fn write_ltx(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        db: &[u8],
        pages: &BTreeMap<u32, Vec<u8>>,
    ) {
        let ps = dbheader::page_size(db).unwrap();
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: ps,
            commit: (db.len() / ps as usize) as u32,
            min_txid: min,
            max_txid: max,
            timestamp_ms: 1_700_000_000_000 + max as i64,
            ..Header::default()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        for (pgno, data) in pages {
            enc.write_page(*pgno, data).unwrap();
        }
        let (bytes, _) = enc.finish().unwrap();
        let dir = self.client.inner.level_dir(level);
        fs::create_dir_all(&dir).unwrap();
        fs::write(self.client.inner.file_path(level, min, max), bytes).unwrap();
    }

    fn follower(&self) -> Arc<Follower> {
        crate::ffi::osfile::install_for_followers();
        Follower::open(FollowerConfig {
            name: Some("r".into()),
            path: self.local(),
            client: self.client.clone(),
            poll_interval: Duration::from_millis(10),
        })
        .unwrap()
    }

    fn local_rows(&self) -> Vec<String> {
        TestConn::open(&self.local())
            .exec("SELECT count(*), coalesce(sum(length(v)), 0) FROM t")
            .unwrap()
    }

    fn primary_rows(&self) -> Vec<String> {
        TestConn::open(&self.primary())
            .exec("SELECT count(*), coalesce(sum(length(v)), 0) FROM t")
            .unwrap()
    }
}

fn changed_pages(prev: &[u8], now: &[u8], all: bool) -> BTreeMap<u32, Vec<u8>> {
    let ps = dbheader::page_size(now).unwrap() as usize;
    now.chunks(ps)
        .enumerate()
        .filter(|(i, p)| all || prev.get(i * ps..(i + 1) * ps) != Some(*p))
        .map(|(i, p)| (i as u32 + 1, p.to_vec()))
        .collect()
}

const INSERT: &str = "INSERT INTO t(v) SELECT hex(randomblob(30)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3);";

#[test]
fn restores_a_missing_file_in_rollback_mode_then_follows() {
    let mut env = Env::new();
    env.step(INSERT);
    env.step(INSERT);
    let f = env.follower();
    assert_eq!(f.status().txid, 2);
    let bytes = fs::read(env.local()).unwrap();
    assert_eq!((bytes[18], bytes[19]), (1, 1), "rollback-journal mode");
    let c = TestConn::open(&env.local());
    assert_eq!(c.exec("PRAGMA journal_mode").unwrap(), vec!["delete"]);
    assert_eq!(env.local_rows(), env.primary_rows());

    env.step(INSERT);
    env.step("UPDATE t SET v = 'x' WHERE id % 2 = 0;");
    let out = f.poll().unwrap();
    assert_eq!(
        out,
        PollOutcome::Applied {
            from: 2,
            to: 4,
            current: true
        }
    );
    // The connection opened before the apply sees the new rows.
    assert_eq!(
        c.exec("SELECT count(*), coalesce(sum(length(v)), 0) FROM t")
            .unwrap(),
        env.primary_rows()
    );
    assert_eq!(c.exec("PRAGMA integrity_check").unwrap(), vec!["ok"]);
    let st = f.status();
    assert_eq!((st.txid, st.primary_txid), (4, 4));
    assert!(st.last_current.is_some() && st.last_error.is_none());
}

#[test]
fn idle_poll_costs_one_list_and_no_download() {
    let mut env = Env::new();
    env.step(INSERT);
    let f = env.follower();
    let before = env.client.counts();
    for _ in 0..3 {
        assert_eq!(f.poll().unwrap(), PollOutcome::Current { txid: 1 });
    }
    let after = env.client.counts();
    assert_eq!(after.0 - before.0, 3, "one LIST per idle poll");
    assert_eq!(after.1, before.1, "no GET while idle");
    // One new file: one GET.
    env.step(INSERT);
    f.poll().unwrap();
    assert_eq!(env.client.counts().1 - after.1, 1);
}

#[test]
fn resume_downloads_only_new_files() {
    let mut env = Env::new();
    for _ in 0..4 {
        env.step(INSERT);
    }
    drop(env.follower());
    env.step(INSERT);
    env.step(INSERT);
    let gets = env.client.counts().1;
    let f = env.follower();
    assert_eq!(env.client.counts().1, gets, "reopening downloads nothing");
    assert_eq!(f.status().txid, 4);
    f.poll().unwrap();
    assert_eq!(env.client.counts().1 - gets, 2, "only TXIDs 5 and 6");
    assert_eq!(env.local_rows(), env.primary_rows());
}

#[test]
fn gap_in_l0_is_bridged_by_a_compaction() {
    let mut env = Env::new();
    env.step(INSERT);
    let f = env.follower();
    let base = env.prev.clone();
    for _ in 0..3 {
        env.step(INSERT);
    }
    // L1 2..=4 holds the merged changes; L0 2 and 3 are gone (retention).
    let merged = changed_pages(&base, &env.prev, false);
    env.write_ltx(1, 2, 4, &env.prev.clone(), &merged);
    for t in [2, 3] {
        fs::remove_file(env.client.inner.file_path(0, t, t)).unwrap();
    }
    env.step(INSERT);
    assert_eq!(
        f.poll().unwrap(),
        PollOutcome::Applied {
            from: 1,
            to: 5,
            current: true
        }
    );
    assert_eq!(env.local_rows(), env.primary_rows());
}

#[test]
fn chain_going_backwards_or_foreign_writes_rebase() {
    let mut env = Env::new();
    env.step(INSERT);
    env.step(INSERT);
    env.step(INSERT);
    let f = env.follower();
    // The primary starts over: a new chain that ends below our TXID.
    fs::remove_dir_all(env.client.inner.root()).unwrap();
    env.prev.clear();
    env.txid = 0;
    env.step("DELETE FROM t WHERE id > 4;");
    let out = f.poll().unwrap();
    assert!(
        matches!(out, PollOutcome::Rebased { txid: 1, .. }),
        "{out:?}"
    );
    assert_eq!(env.local_rows(), env.primary_rows());
    // Someone writes the replica file with plain SQLite: the counter no longer matches.
    TestConn::open(&env.local())
        .exec("INSERT INTO t(v) VALUES ('rogue')")
        .unwrap();
    let out = f.poll().unwrap();
    assert!(
        matches!(out, PollOutcome::Rebased { txid: 1, .. }),
        "{out:?}"
    );
    assert_eq!(env.local_rows(), env.primary_rows());
    assert_eq!(
        TestConn::open(&env.local())
            .exec("PRAGMA integrity_check")
            .unwrap(),
        vec!["ok"]
    );
}

#[test]
fn existing_file_without_follower_state_is_refused() {
    let mut env = Env::new();
    env.step(INSERT);
    fs::copy(env.primary(), env.local()).unwrap();
    crate::ffi::osfile::install_for_followers();
    let err = Follower::open(FollowerConfig {
        name: None,
        path: env.local(),
        client: env.client.clone(),
        poll_interval: Duration::from_secs(1),
    })
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("was not made by a read replica"),
        "{err}"
    );
}

#[test]
fn poll_delays() {
    let p = Duration::from_secs(1);
    assert_eq!(idle_delay(p, 1), p);
    assert_eq!(idle_delay(p, IDLE_POLLS_BEFORE_BACKOFF), p * 2);
    assert_eq!(idle_delay(p, 10_000), p * MAX_IDLE_FACTOR);
    assert_eq!(error_delay(p, 1), p);
    assert_eq!(error_delay(p, 3), p * 4);
    assert_eq!(error_delay(p, 100), MAX_ERROR_BACKOFF);
}

use std::collections::BTreeMap;

use super::*;
use crate::ltx::{Encoder, FLAG_NO_CHECKSUM};
use crate::replica::FileReplica;

const PS: u32 = 512;

struct Env {
    dir: tempfile::TempDir,
    client: FileReplica,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("replica"));
        fs::create_dir(dir.path().join("out")).unwrap();
        Env { dir, client }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out/db.sqlite")
    }

    fn opts(&self) -> RestoreOptions {
        RestoreOptions::new(self.out())
    }

    /// Names in the output directory: nothing but what the test expects may remain.
    fn out_dir(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn encode(
        &self,
        hdr_min: TxId,
        hdr_max: TxId,
        page_size: u32,
        commit: u32,
        pages: &[(u32, u8)],
    ) -> Vec<u8> {
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid: hdr_min,
            max_txid: hdr_max,
            timestamp_ms: 1_700_000_000_000 + hdr_max as i64 * 1000,
            ..Header::default()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        for (pgno, fill) in pages {
            enc.write_page(*pgno, &page(page_size, *pgno, *fill))
                .unwrap();
        }
        enc.finish().unwrap().0
    }

    fn put_raw(&self, level: u8, min: TxId, max: TxId, bytes: &[u8]) {
        let src = self.dir.path().join("src.ltx");
        fs::write(&src, bytes).unwrap();
        self.client
            .put(level, min, max, &src, 1_700_000_000_000 + max as i64 * 1000)
            .unwrap();
    }

    /// A file whose header matches its name, with page size `PS`.
    fn put(&self, level: u8, min: TxId, max: TxId, commit: u32, pages: &[(u32, u8)]) {
        let bytes = self.encode(min, max, PS, commit, pages);
        self.put_raw(level, min, max, &bytes);
    }
}

/// Page content: the fill byte, with the page number in the first bytes; page 1 starts with
/// a SQLite header naming `page_size` (restore refuses anything else).
fn page(page_size: u32, pgno: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; page_size as usize];
    if pgno == 1 {
        stamp_header(&mut p, page_size);
    } else {
        p[..4].copy_from_slice(&pgno.to_be_bytes());
    }
    p
}

fn full(commit: u32, fill: u8) -> Vec<(u32, u8)> {
    (1..=commit).map(|p| (p, fill)).collect()
}

/// The expected database: later versions win, truncated to `commit`.
fn expect(versions: &[&[(u32, u8)]], commit: u32) -> Vec<u8> {
    let mut m = BTreeMap::new();
    for v in versions {
        for (p, f) in v.iter() {
            m.insert(*p, *f);
        }
    }
    (1..=commit).flat_map(|p| page(PS, p, m[&p])).collect()
}

#[test]
fn restores_latest_with_overwrites_and_growth() {
    let env = Env::new();
    let v1 = full(3, 0xa1);
    let v2 = [(2, 0xb2), (4, 0xb4)];
    let v3 = [(1, 0xc1), (3, 0xc3)];
    env.put(0, 1, 1, 3, &v1);
    env.put(0, 2, 2, 4, &v2);
    env.put(0, 3, 3, 4, &v3);
    let out = restore(&env.client, &env.opts()).unwrap();
    assert_eq!(
        out,
        RestoreOutcome::Restored {
            txid: 3,
            page_size: PS,
            page_count: 4,
            files: 3
        }
    );
    assert_eq!(fs::read(env.out()).unwrap(), expect(&[&v1, &v2, &v3], 4));
    assert_eq!(env.out_dir(), vec!["db.sqlite"]);
}

#[test]
fn restores_to_txid() {
    let env = Env::new();
    let v1 = full(3, 1);
    env.put(0, 1, 1, 3, &v1);
    env.put(0, 2, 2, 3, &[(2, 2)]);
    env.put(0, 3, 3, 3, &[(2, 3)]);
    let mut opts = env.opts();
    opts.target = Target::TxId(2);
    let out = restore(&env.client, &opts).unwrap();
    assert!(matches!(
        out,
        RestoreOutcome::Restored {
            txid: 2,
            files: 2,
            ..
        }
    ));
    assert_eq!(fs::read(env.out()).unwrap(), expect(&[&v1, &[(2, 2)]], 3));
}

#[test]
fn shrink_truncates_to_last_commit() {
    let env = Env::new();
    let v1 = full(6, 1);
    env.put(9, 1, 4, 6, &v1);
    env.put(2, 5, 6, 2, &[(2, 9)]);
    let out = restore(&env.client, &env.opts()).unwrap();
    assert!(matches!(
        out,
        RestoreOutcome::Restored {
            page_count: 2,
            txid: 6,
            ..
        }
    ));
    assert_eq!(fs::read(env.out()).unwrap(), expect(&[&v1, &[(2, 9)]], 2));
}

#[test]
fn levels_compactions_and_mid_chain_full_l0() {
    let env = Env::new();
    let v1 = full(4, 1);
    env.put(1, 1, 4, 4, &v1);
    env.put(0, 3, 3, 4, &[(1, 0x33)]); // already covered by 1/1-4
    let v5 = full(5, 5); // a WAL reset: full-DB L0 with min != 1
    env.put(0, 5, 5, 5, &v5);
    let v6 = [(3, 6)];
    env.put(0, 6, 6, 5, &v6);
    let out = restore(&env.client, &env.opts()).unwrap();
    assert!(matches!(
        out,
        RestoreOutcome::Restored {
            txid: 6,
            files: 3,
            ..
        }
    ));
    assert_eq!(fs::read(env.out()).unwrap(), expect(&[&v5, &v6], 5));
}

#[test]
fn missing_page_is_an_error_and_leaves_nothing() {
    let env = Env::new();
    // The encoder refuses an incomplete snapshot; a later file growing the database without
    // providing the new pages is how a damaged replica lacks a page.
    env.put(0, 1, 1, 2, &full(2, 1));
    env.put(0, 2, 2, 4, &[(4, 2)]);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(
        matches!(
            err,
            RestoreError::MissingPage {
                pgno: 3,
                commit: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("0000000000000002-0000000000000002.ltx"),
        "{err}"
    );
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());
}

#[test]
fn corrupted_file_names_the_key_and_leaves_nothing() {
    let env = Env::new();
    env.put(0, 1, 1, 3, &full(3, 1));
    env.put(0, 2, 2, 3, &[(2, 2)]);
    let path = env.client.file_path(0, 2, 2);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = restore(&env.client, &env.opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("0000000000000002-0000000000000002.ltx"),
        "{msg}"
    );
    assert!(matches!(err, RestoreError::Decode { .. }), "{err:?}");
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());
}

#[test]
fn header_name_mismatch_case_j() {
    let env = Env::new();
    env.put(0, 1, 1, 2, &full(2, 1));
    let bytes = env.encode(2, 2, PS, 2, &[(2, 2)]);
    env.put_raw(0, 2, 3, &bytes);
    env.put(0, 4, 4, 2, &[(2, 4)]);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("0000000000000002-0000000000000003.ltx"),
        "{msg}"
    );
    assert!(msg.contains("does not match the file name"), "{msg}");
    assert!(env.out_dir().is_empty());
}

#[test]
fn page_size_change_is_an_error() {
    let env = Env::new();
    env.put(0, 1, 1, 2, &full(2, 1));
    let bytes = env.encode(2, 2, 1024, 2, &[(2, 2)]);
    env.put_raw(0, 2, 2, &bytes);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(err.to_string().contains("page size 1024"), "{err}");
    assert!(env.out_dir().is_empty());
}

#[test]
fn an_image_sqlite_would_not_open_is_an_error_and_leaves_nothing() {
    // Commit 0 (the encoder refuses it: patch the header of a file without pages).
    let env = Env::new();
    env.put(0, 1, 1, 1, &full(1, 1));
    let mut bytes = env.encode(2, 2, PS, 1, &[]);
    bytes[12..16].copy_from_slice(&0u32.to_be_bytes());
    let n = bytes.len();
    let sum = crate::ltx::CHECKSUM_FLAG | crate::ltx::crc64(&bytes[..n - 8]);
    bytes[n - 8..].copy_from_slice(&sum.to_be_bytes());
    env.put_raw(0, 2, 2, &bytes);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(err.to_string().contains("commit 0"), "{err}");
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());

    // Page 1 without the SQLite header.
    let env = Env::new();
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: PS,
        commit: 1,
        min_txid: 1,
        max_txid: 1,
        timestamp_ms: 1_700_000_001_000,
        ..Header::default()
    };
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    enc.write_page(1, &vec![7u8; PS as usize]).unwrap();
    env.put_raw(0, 1, 1, &enc.finish().unwrap().0);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(err.to_string().contains("SQLite header"), "{err}");
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());

    // Page 1 naming another page size than the LTX files.
    let env = Env::new();
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    enc.write_page(1, &{
        let mut p = page(1024, 1, 3);
        p.truncate(PS as usize);
        p
    })
    .unwrap();
    env.put_raw(0, 1, 1, &enc.finish().unwrap().0);
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(
        err.to_string()
            .contains("page size is 1024 but the LTX files use 512"),
        "{err}"
    );
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());
}

#[test]
fn existing_output_rules() {
    let env = Env::new();
    env.put(0, 1, 1, 2, &full(2, 7));
    // Non-empty output: error without force, untouched.
    fs::write(env.out(), b"precious").unwrap();
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(matches!(err, RestoreError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(env.out()).unwrap(), b"precious");
    // -if-db-not-exists: success without restoring.
    let mut o = env.opts();
    o.if_db_not_exists = true;
    assert_eq!(restore(&env.client, &o).unwrap(), RestoreOutcome::DbExists);
    assert_eq!(fs::read(env.out()).unwrap(), b"precious");
    // -force: replaced, sidecars removed.
    for s in ["-wal", "-shm", "-journal"] {
        fs::write(sidecar(&env.out(), s), b"stale").unwrap();
    }
    let mut o = env.opts();
    o.force = true;
    assert!(matches!(
        restore(&env.client, &o).unwrap(),
        RestoreOutcome::Restored { .. }
    ));
    assert_eq!(fs::read(env.out()).unwrap(), expect(&[&full(2, 7)], 2));
    assert_eq!(env.out_dir(), vec!["db.sqlite"]);
    // An empty output file is replaced silently.
    fs::write(env.out(), b"").unwrap();
    assert!(matches!(
        restore(&env.client, &env.opts()).unwrap(),
        RestoreOutcome::Restored { .. }
    ));
    assert_eq!(fs::read(env.out()).unwrap().len(), 2 * PS as usize);
    // A leftover WAL beside an empty output is not silently combined with the restore.
    fs::write(env.out(), b"").unwrap();
    fs::write(sidecar(&env.out(), "-wal"), b"frames").unwrap();
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert!(err.to_string().contains("db.sqlite-wal"), "{err}");
}

#[test]
fn empty_replica_outcomes() {
    let env = Env::new();
    let err = restore(&env.client, &env.opts()).unwrap_err();
    assert_eq!(err.to_string(), "no matching backup files available");
    let mut o = env.opts();
    o.if_replica_exists = true;
    assert_eq!(restore(&env.client, &o).unwrap(), RestoreOutcome::NoReplica);
    // A txid the replica never reached is "no backups" too.
    env.put(0, 1, 1, 1, &full(1, 1));
    o.target = Target::TxId(5);
    assert_eq!(restore(&env.client, &o).unwrap(), RestoreOutcome::NoReplica);
    assert!(env.out_dir().is_empty());
}

#[test]
fn prefetch_path_matches_sequential_and_cleans_up() {
    let env = Env::new();
    let mut versions: Vec<Vec<(u32, u8)>> = vec![full(8, 0)];
    env.put(0, 1, 1, 8, &versions[0]);
    for txid in 2..=12u64 {
        let v: Vec<(u32, u8)> = (1..=8)
            .filter(|p| (p + txid as u32).is_multiple_of(3))
            .map(|p| (p, txid as u8))
            .collect();
        env.put(0, txid, txid, 8, &v);
        versions.push(v);
    }
    let plan = plan_replica(&env.client, &Target::Latest).unwrap();
    let mut opts = env.opts();
    opts.parallelism = 3;
    let out = apply_plan(&env.client, &plan, &opts, true, &NoProgress).unwrap();
    assert!(matches!(
        out,
        RestoreOutcome::Restored {
            txid: 12,
            files: 12,
            ..
        }
    ));
    let refs: Vec<&[(u32, u8)]> = versions.iter().map(|v| v.as_slice()).collect();
    assert_eq!(fs::read(env.out()).unwrap(), expect(&refs, 8));
    assert_eq!(env.out_dir(), vec!["db.sqlite"]);

    // A corrupt file in the middle: error, and no spool or temp file remains.
    fs::remove_file(env.out()).unwrap();
    let path = env.client.file_path(0, 6, 6);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = apply_plan(&env.client, &plan, &opts, true, &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("0000000000000006-0000000000000006.ltx"),
        "{err}"
    );
    assert!(env.out_dir().is_empty(), "{:?}", env.out_dir());
}

#[test]
fn missing_replica_file_is_reported() {
    let env = Env::new();
    env.put(0, 1, 1, 1, &full(1, 1));
    env.put(0, 2, 2, 1, &[(1, 2)]);
    let plan = plan_replica(&env.client, &Target::Latest).unwrap();
    fs::remove_file(env.client.file_path(0, 2, 2)).unwrap();
    let err = apply_plan(&env.client, &plan, &env.opts(), false, &NoProgress).unwrap_err();
    assert!(
        matches!(err, RestoreError::Replica(ReplicaError::NotFound { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("0000000000000002-0000000000000002.ltx"),
        "{err}"
    );
    assert!(env.out_dir().is_empty());
}

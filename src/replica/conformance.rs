//! The conformance suite every [`ReplicaClient`] backend runs in its unit tests.
//!
//! Call [`run_all`] with a client on an **empty** replica and a `plant` hook that stores raw
//! bytes under an arbitrary object name inside a level (the directory or prefix where the backend
//! keeps that level), so that the suite can check that foreign names are ignored. Each check
//! leaves the replica empty again.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{LtxFileInfo, ReplicaClient, ReplicaError, WriteCondition, SNAPSHOT_LEVEL};

/// Stores `data` under the raw object name `name` in level `level`, bypassing the client.
pub type Plant<'a> = &'a dyn Fn(u8, &str, &[u8]);

/// Runs every check in order.
pub fn run_all(client: &dyn ReplicaClient, plant: Plant<'_>) {
    missing_level_lists_empty(client);
    open_missing_is_not_found(client);
    put_list_open_round_trip(client);
    list_is_sorted(client);
    levels_are_isolated(client);
    foreign_names_are_ignored(client, plant);
    created_at_is_timestamp(client);
    delete_removes_and_ignores_missing(client);
    overwrite_with_identical_content(client);
    list_all_and_max_txid(client);
    objects(client);
}

/// Every check of the small-object methods (leases), in order; leaves no object behind.
pub fn objects(client: &dyn ReplicaClient) {
    object_missing_is_not_found(client);
    object_if_absent_creates_once(client);
    object_if_match_compares_versions(client);
    object_always_overwrites(client);
    object_delete(client);
    object_bad_names_are_refused(client);
    objects_are_not_listed(client);
    object_conditional_writes_race(client);
}

fn put_bytes(client: &dyn ReplicaClient, level: u8, min: u64, max: u64, data: &[u8], ts: i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.ltx");
    std::fs::write(&src, data).expect("write src");
    put_path(client, level, min, max, &src, ts);
}

fn put_path(client: &dyn ReplicaClient, level: u8, min: u64, max: u64, src: &Path, ts: i64) {
    client
        .put(level, min, max, src, ts)
        .unwrap_or_else(|e| panic!("put {}: {e}", client.key(level, min, max)));
}

fn read_all(client: &dyn ReplicaClient, level: u8, min: u64, max: u64) -> Vec<u8> {
    let mut r = client
        .open(level, min, max)
        .unwrap_or_else(|e| panic!("open {}: {e}", client.key(level, min, max)));
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).expect("read");
    buf
}

fn ranges(files: &[LtxFileInfo]) -> Vec<(u8, u64, u64)> {
    files
        .iter()
        .map(|f| (f.level, f.min_txid, f.max_txid))
        .collect()
}

fn clear(client: &dyn ReplicaClient) {
    let all = client.list_all().expect("list_all");
    client.delete(&all).expect("delete");
    assert!(
        client.list_all().expect("list_all").is_empty(),
        "replica not empty after delete"
    );
}

fn ms(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

pub fn missing_level_lists_empty(client: &dyn ReplicaClient) {
    for level in 0..=SNAPSHOT_LEVEL {
        assert_eq!(client.list(level).expect("list"), vec![], "level {level}");
    }
    assert_eq!(client.max_txid().expect("max_txid"), 0);
}

pub fn open_missing_is_not_found(client: &dyn ReplicaClient) {
    match client.open(0, 1, 1) {
        Err(ReplicaError::NotFound { .. }) => {}
        Err(e) => panic!("open of a missing file: want NotFound, got {e:?}"),
        Ok(_) => panic!("open of a missing file succeeded"),
    }
    put_bytes(client, 0, 1, 1, b"x", 0);
    match client.open(0, 1, 2) {
        Err(ReplicaError::NotFound { .. }) => {}
        Err(e) => panic!("open of a missing file: want NotFound, got {e:?}"),
        Ok(_) => panic!("open of a missing file succeeded"),
    }
    clear(client);
}

pub fn put_list_open_round_trip(client: &dyn ReplicaClient) {
    // Larger than a typical copy buffer, and not a multiple of it.
    let data: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect();
    put_bytes(client, 0, 1, 1, &data, 1_700_000_000_000);
    let files = client.list(0).expect("list");
    assert_eq!(ranges(&files), vec![(0, 1, 1)]);
    assert_eq!(files[0].size, data.len() as u64);
    assert_eq!(read_all(client, 0, 1, 1), data);
    // An empty file is stored too.
    put_bytes(client, 0, 2, 2, b"", 1_700_000_000_000);
    assert_eq!(read_all(client, 0, 2, 2), b"");
    assert_eq!(client.list(0).expect("list")[1].size, 0);
    clear(client);
}

pub fn list_is_sorted(client: &dyn ReplicaClient) {
    let ranges_in = [
        (0x10u64, 0x10u64),
        (2, 9),
        (1, 1),
        (0xa, 0xf),
        (2, 2),
        (0x100, 0x1ff),
    ];
    for (i, (min, max)) in ranges_in.iter().enumerate() {
        put_bytes(client, 1, *min, *max, &[i as u8], 1_000);
    }
    let got: Vec<(u64, u64)> = client
        .list(1)
        .expect("list")
        .iter()
        .map(|f| (f.min_txid, f.max_txid))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 1),
            (2, 2),
            (2, 9),
            (0xa, 0xf),
            (0x10, 0x10),
            (0x100, 0x1ff)
        ]
    );
    clear(client);
}

pub fn levels_are_isolated(client: &dyn ReplicaClient) {
    put_bytes(client, 0, 1, 1, b"zero", 0);
    put_bytes(client, 1, 1, 1, b"one", 0);
    put_bytes(client, SNAPSHOT_LEVEL, 1, 5, b"nine", 0);
    assert_eq!(ranges(&client.list(0).expect("list")), vec![(0, 1, 1)]);
    assert_eq!(ranges(&client.list(1).expect("list")), vec![(1, 1, 1)]);
    assert_eq!(ranges(&client.list(9).expect("list")), vec![(9, 1, 5)]);
    assert!(client.list(2).expect("list").is_empty());
    assert_eq!(read_all(client, 0, 1, 1), b"zero");
    assert_eq!(read_all(client, 1, 1, 1), b"one");
    assert_eq!(read_all(client, 9, 1, 5), b"nine");
    clear(client);
}

pub fn foreign_names_are_ignored(client: &dyn ReplicaClient, plant: Plant<'_>) {
    let junk = [
        "000000000000000A-000000000000000a.ltx", // uppercase hex
        "0000000000000001-0000000000000002.ltx.tmp",
        ".0000000000000001-0000000000000002.ltx.tmp-1234",
        "000000000000001-0000000000000002.ltx", // 15 digits
        "0000000000000001-0000000000000002.LTX",
        "0000000000000001_0000000000000002.ltx",
        "notes.txt",
        "g000000000000001-0000000000000002.ltx",
    ];
    for name in junk {
        plant(0, name, b"junk");
    }
    assert!(
        client.list(0).expect("list").is_empty(),
        "foreign names listed"
    );
    put_bytes(client, 0, 3, 4, b"real", 0);
    assert_eq!(ranges(&client.list(0).expect("list")), vec![(0, 3, 4)]);
    client
        .delete(&client.list(0).expect("list"))
        .expect("delete");
    assert!(client.list(0).expect("list").is_empty());
}

/// Lists `level` with exact file times (what a `-timestamp` restore sees).
fn list_timed(client: &dyn ReplicaClient, level: u8) -> Vec<LtxFileInfo> {
    let mut files = client.list(level).expect("list");
    client
        .resolve_timestamps(&mut files)
        .expect("resolve_timestamps");
    files
}

pub fn created_at_is_timestamp(client: &dyn ReplicaClient) {
    let stamps = [1_700_000_000_123i64, 1_600_000_000_999, 86_400_001];
    for (i, ts) in stamps.iter().enumerate() {
        put_bytes(client, 0, i as u64 + 1, i as u64 + 1, b"t", *ts);
    }
    // Times are compared at the store's precision (rounded down).
    let step = client.time_resolution().as_millis() as i128;
    let files = list_timed(client, 0);
    let got: Vec<i128> = files.iter().map(|f| ms(f.created_at)).collect();
    let want: Vec<i128> = stamps.iter().map(|t| *t as i128 / step * step).collect();
    assert_eq!(got, want, "created_at must be the put timestamp (ms)");
    // A recent timestamp is honoured too (not replaced by "now").
    let now = SystemTime::now() - Duration::from_secs(3600);
    put_bytes(client, 0, 9, 9, b"t", ms(now) as i64);
    let f = list_timed(client, 0).pop().expect("file");
    assert_eq!(ms(f.created_at), ms(now) / step * step);
    clear(client);
}

pub fn delete_removes_and_ignores_missing(client: &dyn ReplicaClient) {
    put_bytes(client, 0, 1, 1, b"a", 0);
    put_bytes(client, 0, 2, 2, b"b", 0);
    put_bytes(client, 1, 1, 2, b"c", 0);
    let l0 = client.list(0).expect("list");
    client.delete(&l0[..1]).expect("delete");
    assert_eq!(ranges(&client.list(0).expect("list")), vec![(0, 2, 2)]);
    assert_eq!(ranges(&client.list(1).expect("list")), vec![(1, 1, 2)]);
    // Deleting again (already missing) is fine, as is an empty batch.
    client.delete(&l0).expect("delete missing");
    client.delete(&[]).expect("delete nothing");
    assert!(client.list(0).expect("list").is_empty());
    assert!(matches!(
        client.open(0, 1, 1),
        Err(ReplicaError::NotFound { .. })
    ));
    clear(client);
}

pub fn overwrite_with_identical_content(client: &dyn ReplicaClient) {
    put_bytes(client, 2, 5, 8, b"same", 5_000);
    put_bytes(client, 2, 5, 8, b"same", 5_000);
    let files = list_timed(client, 2);
    assert_eq!(ranges(&files), vec![(2, 5, 8)]);
    assert_eq!(read_all(client, 2, 5, 8), b"same");
    assert_eq!(ms(files[0].created_at), 5_000);
    clear(client);
}

pub fn list_all_and_max_txid(client: &dyn ReplicaClient) {
    put_bytes(client, 9, 1, 0x20, b"s", 0);
    put_bytes(client, 0, 0x21, 0x21, b"a", 0);
    put_bytes(client, 3, 1, 0x10, b"b", 0);
    assert_eq!(
        ranges(&client.list_all().expect("list_all")),
        vec![(0, 0x21, 0x21), (3, 1, 0x10), (9, 1, 0x20)]
    );
    assert_eq!(client.max_txid().expect("max_txid"), 0x21);
    clear(client);
}

const OBJ: &str = "conformance-object.json";

fn read_obj(client: &dyn ReplicaClient, name: &str) -> super::VersionedObject {
    client
        .read_object(name)
        .unwrap_or_else(|e| panic!("read_object {name}: {e}"))
}

pub fn object_missing_is_not_found(client: &dyn ReplicaClient) {
    match client.read_object(OBJ) {
        Err(ReplicaError::NotFound { .. }) => {}
        other => panic!("read_object of a missing object: want NotFound, got {other:?}"),
    }
    client
        .delete_object(OBJ)
        .expect("deleting a missing object is not an error");
}

pub fn object_if_absent_creates_once(client: &dyn ReplicaClient) {
    let v1 = client
        .write_object(OBJ, b"first", WriteCondition::IfAbsent)
        .expect("IfAbsent on a missing object");
    let got = read_obj(client, OBJ);
    assert_eq!(got.data, b"first");
    assert_eq!(
        got.version, v1,
        "read_object returns the version write_object returned"
    );
    match client.write_object(OBJ, b"second", WriteCondition::IfAbsent) {
        Err(ReplicaError::AlreadyExists { .. }) => {}
        other => panic!("IfAbsent on an existing object: want AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        read_obj(client, OBJ).data,
        b"first",
        "a refused write changed the object"
    );
    client.delete_object(OBJ).expect("delete_object");
}

pub fn object_if_match_compares_versions(client: &dyn ReplicaClient) {
    let v1 = client
        .write_object(OBJ, b"one", WriteCondition::IfAbsent)
        .expect("create");
    let v2 = client
        .write_object(OBJ, b"two", WriteCondition::IfMatch(v1.clone()))
        .expect("IfMatch with the current version");
    assert_ne!(v1, v2, "a new content must get a new version");
    let got = read_obj(client, OBJ);
    assert_eq!(
        (got.data.as_slice(), got.version.as_str()),
        (&b"two"[..], v2.as_str())
    );
    // The old version no longer matches.
    match client.write_object(OBJ, b"three", WriteCondition::IfMatch(v1)) {
        Err(ReplicaError::Precondition { .. }) => {}
        other => panic!("IfMatch with a stale version: want Precondition, got {other:?}"),
    }
    assert_eq!(read_obj(client, OBJ).data, b"two");
    client.delete_object(OBJ).expect("delete_object");
    // A vanished object never matches.
    match client.write_object(OBJ, b"four", WriteCondition::IfMatch(v2)) {
        Err(ReplicaError::NotFound { .. } | ReplicaError::Precondition { .. }) => {}
        other => {
            panic!("IfMatch on a missing object: want NotFound or Precondition, got {other:?}")
        }
    }
    assert!(matches!(
        client.read_object(OBJ),
        Err(ReplicaError::NotFound { .. })
    ));
}

pub fn object_always_overwrites(client: &dyn ReplicaClient) {
    client
        .write_object(OBJ, b"a", WriteCondition::Always)
        .expect("Always on a missing object");
    let v = client
        .write_object(OBJ, b"bb", WriteCondition::Always)
        .expect("Always on an existing object");
    let got = read_obj(client, OBJ);
    assert_eq!((got.data, got.version), (b"bb".to_vec(), v));
    client.delete_object(OBJ).expect("delete_object");
}

pub fn object_delete(client: &dyn ReplicaClient) {
    client
        .write_object(OBJ, b"x", WriteCondition::Always)
        .expect("write");
    client.delete_object(OBJ).expect("delete_object");
    assert!(matches!(
        client.read_object(OBJ),
        Err(ReplicaError::NotFound { .. })
    ));
    client.delete_object(OBJ).expect("delete again");
    // Deleted objects can be created again with IfAbsent.
    client
        .write_object(OBJ, b"y", WriteCondition::IfAbsent)
        .expect("IfAbsent after delete");
    client.delete_object(OBJ).expect("delete_object");
}

/// Object names are plain file names at the replica root: nothing that could reach into a
/// level directory or above the root.
pub fn object_bad_names_are_refused(client: &dyn ReplicaClient) {
    for bad in ["", "a/b", ".."] {
        assert!(
            client.read_object(bad).is_err(),
            "name {bad:?} must be refused"
        );
    }
}

pub fn objects_are_not_listed(client: &dyn ReplicaClient) {
    client
        .write_object(OBJ, b"not an ltx file", WriteCondition::Always)
        .expect("write");
    put_bytes(client, 0, 1, 1, b"l", 0);
    assert_eq!(
        ranges(&client.list_all().expect("list_all")),
        vec![(0, 1, 1)],
        "objects must stay outside the level listings"
    );
    client.delete_object(OBJ).expect("delete_object");
    clear(client);
}

/// Several threads race on the same conditional write: exactly one may win.
pub fn object_conditional_writes_race(client: &dyn ReplicaClient) {
    const RACERS: usize = 8;
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..RACERS {
            let wins = &wins;
            s.spawn(move || {
                match client.write_object(
                    OBJ,
                    format!("racer {i}").as_bytes(),
                    WriteCondition::IfAbsent,
                ) {
                    Ok(_) => {
                        wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(ReplicaError::AlreadyExists { .. }) => {}
                    Err(e) => panic!("racing IfAbsent: {e}"),
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 1, "exactly one IfAbsent create may win");
    let base = read_obj(client, OBJ).version;
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..RACERS {
            let (wins, base) = (&wins, base.clone());
            s.spawn(move || {
                let data = format!("swap {i}");
                match client.write_object(OBJ, data.as_bytes(), WriteCondition::IfMatch(base)) {
                    Ok(_) => {
                        wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(ReplicaError::Precondition { .. }) => {}
                    Err(e) => panic!("racing IfMatch: {e}"),
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 1, "exactly one IfMatch swap may win");
    client.delete_object(OBJ).expect("delete_object");
}

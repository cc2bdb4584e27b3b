//! Unit tests of `staging`.
use super::*;

fn commit(db_size: u32, offset: u64) -> CommitRecord {
    CommitRecord {
        db_size,
        page_size: 512,
        timestamp_ms: 1_700_000_000_000,
        full: false,
        wal: WalPos {
            salt1: 1,
            salt2: 2,
            offset,
            checksum: Checksum(3, 4),
            big_endian: false,
        },
    }
}

#[test]
fn segment_round_trip_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir {
        root: dir.path().to_path_buf(),
    };
    meta.create_dirs().unwrap();
    let mut w = SegmentWriter::open(&meta, 1).unwrap();
    w.write_page(3, &[7u8; 512]).unwrap();
    w.write_commit(&commit(3, 1000)).unwrap();
    w.write_page(4, &[8u8; 512]).unwrap();
    w.write_out().unwrap(); // a crash after this page, before its commit record
    drop(w);

    let mut r = SegmentReader::open(&meta.segment_path(1)).unwrap();
    let mut recs = vec![];
    while let Some(rec) = r.next_record().unwrap() {
        recs.push(rec);
    }
    assert_eq!(recs.len(), 3, "page, commit, and the uncommitted page");
    assert!(matches!(
        recs[0],
        Record::Page {
            pgno: 3,
            len: 512,
            ..
        }
    ));
    assert_eq!(recs[1], Record::Commit(commit(3, 1000)));

    // Reopening for append drops the uncommitted tail.
    let mut w = SegmentWriter::open(&meta, 1).unwrap();
    w.write_closed(&DbFingerprint {
        len: 1536,
        mtime_ns: 42,
    })
    .unwrap();
    drop(w);
    let mut r = SegmentReader::open(&meta.segment_path(1)).unwrap();
    let mut kinds = vec![];
    while let Some(rec) = r.next_record().unwrap() {
        kinds.push(rec);
    }
    assert_eq!(kinds.len(), 3);
    assert_eq!(
        kinds[2],
        Record::Closed(DbFingerprint {
            len: 1536,
            mtime_ns: 42
        })
    );
    let f = File::open(meta.segment_path(1)).unwrap();
    let mut page = [0u8; 512];
    let Record::Page { offset, .. } = kinds[0] else {
        panic!()
    };
    read_page_at(&f, offset, &mut page).unwrap();
    assert_eq!(page, [7u8; 512]);
}

#[test]
fn corrupt_commit_record_ends_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir {
        root: dir.path().to_path_buf(),
    };
    meta.create_dirs().unwrap();
    let mut w = SegmentWriter::open(&meta, 2).unwrap();
    w.write_page(1, &[1u8; 512]).unwrap();
    w.write_commit(&commit(1, 100)).unwrap();
    drop(w);
    let path = meta.segment_path(2);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let r = SegmentReader::open(&path).unwrap();
    assert_eq!(r.scan_complete_len().unwrap(), 8);
}

#[test]
fn state_round_trip_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir::for_db(&dir.path().join("app.db"), None);
    assert!(meta.root.ends_with(".app.db-liblitestream"));
    meta.create_dirs().unwrap();
    assert_eq!(meta.load_state().unwrap(), None);
    let s = State {
        txid: 5,
        replicated_txid: 4,
        page_size: 4096,
        ..Default::default()
    };
    meta.save_state(&s).unwrap();
    assert_eq!(meta.load_state().unwrap(), Some(s));
    SegmentWriter::open(&meta, 0x1f).unwrap();
    SegmentWriter::open(&meta, 2).unwrap();
    fs::write(meta.staging_dir().join("junk"), b"x").unwrap();
    assert_eq!(meta.list_segments().unwrap(), vec![2, 0x1f]);
}

#[test]
fn segment_torn_before_its_header_is_empty_and_reusable() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir {
        root: dir.path().to_path_buf(),
    };
    meta.create_dirs().unwrap();
    for torn in [&b""[..], &b"LSS"[..], &SEGMENT_MAGIC[..7]] {
        let path = meta.segment_path(5);
        fs::write(&path, torn).unwrap();
        let mut r = SegmentReader::open(&path).unwrap();
        assert_eq!(r.next_record().unwrap(), None, "{torn:?}");
        let mut w = SegmentWriter::open(&meta, 5).unwrap();
        w.write_page(2, &[9u8; 512]).unwrap();
        w.write_commit(&commit(2, 64)).unwrap();
        drop(w);
        let mut r = SegmentReader::open(&path).unwrap();
        assert!(matches!(
            r.next_record().unwrap(),
            Some(Record::Page { pgno: 2, .. })
        ));
        assert_eq!(
            r.next_record().unwrap(),
            Some(Record::Commit(commit(2, 64)))
        );
        fs::remove_file(&path).unwrap();
    }
}

//! Unit tests of `capture`.
use super::*;
use crate::staging::{MetaDir, Record, SegmentReader};
use crate::wal::testing::WalBuilder;
use crate::wal::FrameHeader;

struct Mem(Vec<u8>);
impl ReadAt for Mem {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let off = offset as usize;
        if off >= self.0.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.0.len() - off);
        buf[..n].copy_from_slice(&self.0[off..off + n]);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

fn records(meta: &MetaDir, seq: u64) -> Vec<Record> {
    let mut r = SegmentReader::open(&meta.segment_path(seq)).unwrap();
    let mut v = vec![];
    while let Some(rec) = r.next_record().unwrap() {
        v.push(rec);
    }
    v
}

fn pages_and_commits(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| match r {
            Record::Page { pgno, .. } => format!("P{pgno}"),
            Record::Commit(c) => format!("C{}{}", c.db_size, if c.full { "F" } else { "" }),
            Record::Closed(_) => "X".into(),
        })
        .collect()
}

fn setup() -> (tempfile::TempDir, MetaDir, SegmentWriter) {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir {
        root: dir.path().to_path_buf(),
    };
    meta.create_dirs().unwrap();
    let seg = SegmentWriter::open(&meta, 1).unwrap();
    (dir, meta, seg)
}

#[test]
fn first_capture_is_full_then_incremental_and_uncommitted_tail_dropped() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 3]); // the database file: 3 pages
    let mut w = WalBuilder::new(512, 10, 20);
    w.frame(2, 3, 0xaa); // commit: size 3
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    assert_eq!(
        c,
        Captured {
            txns: 1,
            pages: 3,
            full: true
        }
    );
    // Next: a committed txn, then frames of a txn that never committed (spill + rollback).
    w.frame(3, 0, 0xbb).frame(1, 4, 0xcc).frame(2, 0, 0xdd);
    let c = st
        .capture(&Mem(w.bytes.clone()), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!(
        c,
        Captured {
            txns: 1,
            pages: 3,
            full: false
        }
    );
    drop(seg);
    let got = pages_and_commits(&records(&meta, 1));
    // full: 1 (db), 2 (wal), 3 (db); then 3, 1, and growth page 4 read from the db (zeros).
    assert_eq!(got, ["P1", "P2", "P3", "C3F", "P3", "P1", "P4", "C4"]);
    assert_eq!(st.db_size, 4);
    assert_eq!(st.pos.unwrap().offset, 32 + 3 * (24 + 512));
}

#[test]
fn salt_reset_by_someone_else_forces_full_and_clean_restart_continues() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0; 512 * 2]);
    let mut w = WalBuilder::new(512, 1, 1);
    w.frame(1, 2, 1);
    let mut st = CaptureState::default();
    st.capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    // A clean restart observed by us: the generation was closed before the new header.
    st.closed = Some(DbFingerprint {
        len: 1024,
        mtime_ns: 1,
    });
    let mut w2 = WalBuilder::new(512, 2, 7);
    w2.frame(2, 2, 2);
    let c = st
        .capture(&Mem(w2.bytes.clone()), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!(
        c,
        Captured {
            txns: 1,
            pages: 1,
            full: false
        }
    );
    // A reset nobody told us about.
    let mut w3 = WalBuilder::new(512, 9, 9);
    w3.frame(1, 2, 3);
    let c = st
        .capture(&Mem(w3.bytes.clone()), &db, &mut seg, 3, false, None)
        .unwrap();
    assert_eq!(
        c,
        Captured::default(),
        "full image deferred without allow_full"
    );
    assert!(st.need_full.is_some());
    let c = st
        .capture(&Mem(w3.bytes.clone()), &db, &mut seg, 3, true, None)
        .unwrap();
    assert!(c.full);
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "C2F", "P2", "C2", "P1", "P2", "C2F"]
    );
}

#[test]
fn wal_index_mark_covers_frames_with_deferred_checksums() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0; 512]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 1, 1);
    let mut st = CaptureState::default();
    st.capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    // A committed frame whose salts and checksums SQLite has not rewritten yet.
    w.frame(1, 1, 2);
    let mut bytes = w.bytes.clone();
    let frame = 32 + (24 + 512);
    bytes[frame + 8..frame + 24].fill(0);
    let c = st
        .capture(&Mem(bytes.clone()), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!(
        c.txns, 0,
        "without the wal-index the chain cannot prove the commit"
    );
    let mark = WalIndexMark {
        max_frame: 2,
        salt1: 5,
        salt2: 6,
    };
    let c = st
        .capture(&Mem(bytes.clone()), &db, &mut seg, 2, true, Some(mark))
        .unwrap();
    assert_eq!(c.txns, 1);
    // A mark of another generation is ignored.
    let stale = WalIndexMark {
        max_frame: 9,
        salt1: 1,
        salt2: 1,
    };
    assert_eq!(
        st.capture(&Mem(bytes), &db, &mut seg, 3, true, Some(stale))
            .unwrap()
            .txns,
        0
    );
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "C1F", "P1", "C1"]
    );
}

#[test]
fn wal_index_header_parse() {
    let mut h = [0u8; 48];
    assert_eq!(WalIndexMark::parse(&h), None, "not initialised");
    h[12] = 1;
    h[16..20].copy_from_slice(&7u32.to_ne_bytes());
    h[32..36].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    h[36..40].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        WalIndexMark::parse(&h),
        Some(WalIndexMark {
            max_frame: 7,
            salt1: 0x0102_0304,
            salt2: 9
        })
    );
}

#[test]
fn stops_at_broken_checksum_chain() {
    let (_d, _meta, mut seg) = setup();
    let db = Mem(vec![]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 1, 1);
    let mut st = CaptureState::default();
    st.capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    w.frame(1, 1, 2);
    let mut bytes = w.bytes.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    let c = st
        .capture(&Mem(bytes), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!(c.txns, 0);
}

/// A WAL whose `size()` fails and whose header cannot be read: only the fast path (header
/// known, mark of the same generation) can capture from it.
struct NoStat(Vec<u8>);
impl ReadAt for NoStat {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset < WAL_HEADER_SIZE {
            return Err(io::Error::other("header read on the fast path"));
        }
        Mem(self.0.clone()).read_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Err(io::Error::other("stat on the fast path"))
    }
}

#[test]
fn mark_of_the_known_generation_skips_stat_and_header_read() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0; 512]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 1, 1);
    let mut st = CaptureState::default();
    let mark = |n| WalIndexMark {
        max_frame: n,
        salt1: 5,
        salt2: 6,
    };
    assert_eq!(st.known_wal_end(Some(mark(1))), None, "no header read yet");
    st.capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, Some(mark(1)))
        .unwrap();
    w.frame(2, 2, 2).frame(1, 2, 3);
    let c = st
        .capture(
            &NoStat(w.bytes.clone()),
            &db,
            &mut seg,
            2,
            true,
            Some(mark(3)),
        )
        .unwrap();
    assert_eq!((c.txns, c.pages), (2, 2));
    assert_eq!(st.pos.unwrap().offset, 32 + 3 * (24 + 512));
    // A mark behind the captured position, or of another generation, takes the slow path.
    assert_eq!(st.known_wal_end(Some(mark(2))), None);
    assert_eq!(
        st.known_wal_end(Some(WalIndexMark {
            salt2: 7,
            ..mark(3)
        })),
        None
    );
    st.forget_wal_header();
    assert_eq!(st.known_wal_end(Some(mark(3))), None);
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "C1F", "P2", "C2", "P1", "C2"]
    );
}

/// A wal-index mark can count frames the file does not hold yet: with SQLite's crash-test VFS
/// stacked above ours, writes reach our file only at the next sync, and until then the file
/// holds an older generation's frames at those offsets (walcrash-6 in SQLite's suite). They
/// must not be staged as committed data; the capture stops before them and takes the real
/// frames at a later commit.
#[test]
fn trusted_mark_never_takes_an_older_generations_frames() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 2]);
    let mut old = WalBuilder::new(512, 1, 2);
    old.frame(1, 2, 0x01).frame(2, 2, 0x02);
    let mut new = WalBuilder::new(512, 2, 7);
    new.frame(1, 2, 0xaa);
    // The file: the new header and first frame, then the old generation's frame 2.
    let mut bytes = new.bytes.clone();
    bytes.extend_from_slice(&old.bytes[32 + 536..]);
    let mark = WalIndexMark {
        max_frame: 2,
        salt1: 2,
        salt2: 7,
    };
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(bytes), &db, &mut seg, 1, true, Some(mark))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    assert_eq!(
        st.pos.map(|p| p.offset),
        Some(32 + 536),
        "stops before the stale frame"
    );
    // The real frame 2 arrives: captured incrementally.
    new.frame(2, 2, 0xbb);
    let c = st
        .capture(&Mem(new.bytes.clone()), &db, &mut seg, 2, true, Some(mark))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, false));
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "C2F", "P2", "C2"]
    );
}

/// pagerfault.test 17b: an I/O error after the frames of a transaction (commit frame included,
/// valid checksums) were written to a new WAL fails the commit; SQLite's wal-index still says
/// nothing is committed. The frames must not be staged, not even as a full image.
#[test]
fn frames_of_a_failed_commit_are_not_staged() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 3]);
    let mut w = WalBuilder::new(512, 40, 41);
    w.frame(2, 0, 0xaa).frame(3, 3, 0xbb);
    let nothing = WalIndexMark {
        max_frame: 0,
        salt1: 7,
        salt2: 8,
    };
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, Some(nothing))
        .unwrap();
    assert_eq!(c, Captured::default());
    assert_eq!(st.pos, None);
    // SQLite retries and commits: the wal-index now names this generation.
    let committed = WalIndexMark {
        max_frame: 2,
        salt1: 40,
        salt2: 41,
    };
    let c = st
        .capture(
            &Mem(w.bytes.clone()),
            &db,
            &mut seg,
            2,
            true,
            Some(committed),
        )
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "P3", "C3F"]
    );
}

/// walro2.test copies a database's WAL over another WAL this process follows; the PRNG reset of
/// SQLite's test harness gives both the same salts. The copy must not be taken as the
/// continuation: the frame before the recorded position no longer matches it.
#[test]
fn wal_replaced_by_a_copy_with_the_same_salts_gets_a_full_image() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 2]);
    let mut a = WalBuilder::new(512, 5, 6);
    a.frame(1, 2, 0xaa);
    let mut st = CaptureState::default();
    st.capture(&Mem(a.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    let mut b = WalBuilder::new(512, 5, 6);
    b.frame(2, 2, 0xbb).frame(1, 2, 0xcc);
    let c = st
        .capture(&Mem(b.bytes.clone()), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    // The same WAL, grown: incremental.
    a.frame(2, 2, 0xdd);
    let mut st = CaptureState::default();
    let (_d2, _meta2, mut seg2) = setup();
    st.capture(
        &Mem(a.bytes[..32 + 536].to_vec()),
        &db,
        &mut seg2,
        1,
        true,
        None,
    )
    .unwrap();
    let c = st
        .capture(&Mem(a.bytes.clone()), &db, &mut seg2, 2, true, None)
        .unwrap();
    assert_eq!((c.txns, c.full), (1, false));
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "C2F", "P1", "P2", "C2F"]
    );
}

/// After a committed frame with deferred (zero) salts and checksum, our chain no longer matches
/// SQLite's; the next frame with this generation's salts carries SQLite's running checksum and
/// resynchronises the chain, so the next capture continues incrementally instead of suspecting
/// a rewritten WAL.
#[test]
fn deferred_checksum_frame_then_chain_resyncs() {
    let (_d, _meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 2]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 2, 0xaa).frame(2, 2, 0xbb);
    let mut bytes = w.bytes.clone();
    bytes[32 + 8..32 + 24].fill(0); // frame 1: salts and checksum deferred
    let f2_ck = FrameHeader::parse(bytes[32 + 536..32 + 560].try_into().unwrap()).checksum;
    let mark = |n| WalIndexMark {
        max_frame: n,
        salt1: 5,
        salt2: 6,
    };
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(bytes.clone()), &db, &mut seg, 1, true, Some(mark(2)))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    assert_eq!(st.pos.map(|p| p.checksum), Some(f2_ck));
    w.frame(1, 2, 0xcc);
    bytes.extend_from_slice(&w.bytes[32 + 2 * 536..]);
    let c = st
        .capture(&Mem(bytes), &db, &mut seg, 2, true, Some(mark(3)))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, false));
}

/// walcrash.test 6: with the crash-test VFS above ours, the sync at a commit lands in the
/// middle of the frames SQLite pads the WAL with (copies of the commit frame), so the rest of
/// that frame reaches our file only at the next sync. The committed frame is not taken torn;
/// it is taken at the next capture, once complete.
#[test]
fn torn_committed_frame_waits_for_its_content() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 2]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 2, 0xaa).frame(1, 2, 0xaa);
    let mut torn = w.bytes.clone();
    let end = torn.len();
    torn[end - 100..].fill(0x77);
    let mark = WalIndexMark {
        max_frame: 2,
        salt1: 5,
        salt2: 6,
    };
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(torn), &db, &mut seg, 1, true, Some(mark))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    assert_eq!(st.pos.map(|p| p.offset), Some(32 + 536));
    let c = st
        .capture(&Mem(w.bytes.clone()), &db, &mut seg, 2, true, Some(mark))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, false));
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "C2F", "P1", "C2"]
    );
}

/// superlock.test 6 swaps two databases and their WALs (in place) under a superlock: the WAL
/// this process followed is emptied, and the database file holds another database. Nothing
/// is left to anchor a full image to until the next commit, but the next one must be full.
#[test]
fn wal_emptied_behind_our_back_forces_a_full_image() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 2]);
    let mut w = WalBuilder::new(512, 5, 6);
    w.frame(1, 2, 0xaa);
    let mut st = CaptureState::default();
    st.capture(&Mem(w.bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    let c = st
        .capture(&Mem(vec![]), &db, &mut seg, 2, true, None)
        .unwrap();
    assert_eq!(c, Captured::default());
    assert!(st.need_full.is_some());
    // A closed generation is not lost: the next one continues it.
    let mut st2 = CaptureState {
        closed: Some(DbFingerprint {
            len: 1024,
            mtime_ns: 1,
        }),
        ..st.clone()
    };
    st2.need_full = None;
    st2.capture(&Mem(vec![]), &db, &mut seg, 2, true, None)
        .unwrap();
    assert!(st2.need_full.is_none());
    // The other database's WAL with other salts: a full image.
    let mut other = WalBuilder::new(512, 9, 9);
    other.frame(2, 2, 0xbb);
    let c = st
        .capture(&Mem(other.bytes.clone()), &db, &mut seg, 3, true, None)
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    drop(seg);
    assert_eq!(
        pages_and_commits(&records(&meta, 1)),
        ["P1", "P2", "C2F", "P1", "P2", "C2F"]
    );
}

/// SQLite 3.40 can commit a frame whose page was rewritten in place after its checksum was
/// computed (after `ROLLBACK TO` a savepoint whose pages were spilled): the stored checksums
/// still form the chain, but that frame's content no longer matches its own. SQLite's readers
/// take it through the wal-index; the capture used to stop there for good and replicate nothing
/// more of the generation. Under the wal-index mark it is taken, with its current content.
#[test]
fn committed_frame_rewritten_in_place_is_taken_under_the_mark() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; 512 * 4]);
    let mut w = WalBuilder::new(512, 3, 4);
    w.frame(1, 0, 0xaa).frame(2, 0, 0xbb).frame(3, 3, 0xcc);
    let mut bytes = w.bytes.clone();
    // Frame 1's page is rewritten in place; its header (and stored checksum) stays.
    bytes[32 + 24..32 + 536].fill(0xdd);
    let mark = |max_frame| WalIndexMark {
        max_frame,
        salt1: 3,
        salt2: 4,
    };
    // Without SQLite's word on what is committed, the chain decides: nothing yet.
    let mut st = CaptureState::default();
    let c = st
        .capture(&Mem(bytes.clone()), &db, &mut seg, 1, true, None)
        .unwrap();
    assert_eq!(c, Captured::default());
    // With the mark: a full image holding the rewritten content.
    let c = st
        .capture(&Mem(bytes.clone()), &db, &mut seg, 1, true, Some(mark(3)))
        .unwrap();
    assert_eq!((c.txns, c.full), (1, true));
    assert_eq!(st.pos.map(|p| p.offset), Some(32 + 3 * 536));
    // Incrementally too: frames 4..6, frame 5 rewritten in place, commit at 6.
    w.frame(4, 4, 0x44).frame(2, 0, 0x55).frame(1, 4, 0x66);
    let mut more = w.bytes.clone();
    more[32 + 24..32 + 536].fill(0xdd);
    let f5 = 32 + 4 * 536;
    more[f5 + 24..f5 + 536].fill(0x77);
    let c = st
        .capture(&Mem(more.clone()), &db, &mut seg, 2, true, Some(mark(6)))
        .unwrap();
    assert_eq!((c.txns, c.full), (2, false));
    drop(seg);
    let recs = records(&meta, 1);
    assert_eq!(
        pages_and_commits(&recs),
        ["P1", "P2", "P3", "C3F", "P4", "C4", "P2", "P1", "C4"]
    );
    let page_of = |i: usize| match recs[i] {
        Record::Page { offset, .. } => {
            let f = std::fs::read(meta.segment_path(1)).unwrap();
            f[offset as usize]
        }
        _ => unreachable!(),
    };
    assert_eq!(page_of(0), 0xdd, "frame 1 as rewritten");
    assert_eq!(page_of(6), 0x77, "frame 5 as rewritten");
}

#[test]
fn growth_bits_track_only_pages_above_the_base() {
    let mut g = GrowthBits::default();
    g.reset(10);
    for pgno in [3, 10, 11, 75, 200] {
        g.insert(pgno);
    }
    assert!(g.contains(11) && g.contains(75) && g.contains(200));
    assert!(!g.contains(12) && !g.contains(74) && !g.contains(5000));
    // 190 pages above the base: three words, not a set of every page.
    assert_eq!(g.words.len(), 3);
    g.reset(200);
    assert!(!g.contains(201) && g.words.is_empty());
}

//! Unit tests of `validate`.
use std::io;

use super::*;
use crate::capture::CaptureState;
use crate::staging::{CommitRecord, SegmentWriter};
use crate::wal::testing::WalBuilder;
use crate::wal::Checksum;

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

const PS: u32 = 512;

fn setup() -> (tempfile::TempDir, MetaDir, SegmentWriter) {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaDir {
        root: dir.path().to_path_buf(),
    };
    meta.create_dirs().unwrap();
    let seg = SegmentWriter::open(&meta, 1).unwrap();
    (dir, meta, seg)
}

fn mark(w: &WalBuilder, max_frame: u32) -> Committed {
    Committed::Mark(
        WalIndexMark {
            max_frame,
            salt1: w.header.salt1,
            salt2: w.header.salt2,
        },
        None,
    )
}

/// Captures what `wal` holds up to `frames`, then validates; returns the outcome.
fn capture_and_check(
    st: &mut CaptureState,
    v: &mut Validator,
    meta: &MetaDir,
    seg: &mut SegmentWriter,
    w: &WalBuilder,
    frames: u32,
    db: &Mem,
) -> Result<Outcome, ValidateError> {
    let wal = Mem(w.bytes.clone());
    let m = WalIndexMark {
        max_frame: frames,
        salt1: w.header.salt1,
        salt2: w.header.salt2,
    };
    st.capture(&wal, db, seg, 1, true, Some(m)).unwrap();
    v.consume(meta, seg.seq, seg.len())?;
    v.check(mark(w, frames), &wal, db)
}

#[test]
fn faithful_captures_validate() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 3]);
    let mut w = WalBuilder::new(PS, 10, 20);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    w.frame(2, 3, 0xaa);
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 3 });
    // Growth to 5 pages (page 5 written, page 4 read from the database file: zeros).
    w.frame(1, 0, 0xbb).frame(5, 5, 0xcc);
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 3, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 5 });
    // Shrink to 2 pages.
    w.frame(2, 2, 0xdd);
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 4, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 2 });
    assert_eq!(v.checks, 3);
}

#[test]
fn corrupted_staged_page_is_detected() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 3]);
    let mut w = WalBuilder::new(PS, 10, 20);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    w.frame(2, 3, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    // A bug stages the wrong bytes for page 3 in the next transaction.
    w.frame(3, 3, 0xbb);
    let wal = Mem(w.bytes.clone());
    seg.write_page(3, &[0xbc; PS as usize]).unwrap();
    seg.write_commit(&CommitRecord {
        db_size: 3,
        page_size: PS,
        timestamp_ms: 1,
        full: false,
        wal: WalPos::default(),
    })
    .unwrap();
    v.consume(&meta, seg.seq, seg.len()).unwrap();
    let err = v.check(mark(&w, 2), &wal, &db).unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("page 3") && m.contains("WAL")),
        "{err}"
    );
}

#[test]
fn corrupted_segment_bytes_are_detected() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 1, 2);
    let mut st = CaptureState::default();
    w.frame(1, 2, 0xaa);
    let wal = Mem(w.bytes.clone());
    st.capture(&wal, &db, &mut seg, 1, true, None).unwrap();
    // Flip one byte of the staged page 2 (from the database file) on disk.
    let path = meta.segment_path(1);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(4)
        .rposition(|x| x == [0x11; 4])
        .expect("page 2 bytes");
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let mut v = Validator::new();
    v.consume(&meta, 1, seg.len()).unwrap();
    let err = v.check(mark(&w, 1), &wal, &db).unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("page 2") && m.contains("database file")),
        "{err}"
    );
}

#[test]
fn missed_commit_is_detected() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 1, 2);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    w.frame(1, 2, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    // SQLite commits a transaction that grows the database; the capture never sees it.
    w.frame(3, 3, 0xbb);
    let err = v
        .check(mark(&w, 2), &Mem(w.bytes.clone()), &db)
        .unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("database size")),
        "{err}"
    );
    // Same size, different content: page 1 rewritten, capture missed it.
    let (_d, meta, mut seg) = setup();
    let mut w = WalBuilder::new(PS, 1, 2);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    w.frame(1, 2, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    w.frame(1, 2, 0xab);
    let err = v
        .check(mark(&w, 2), &Mem(w.bytes.clone()), &db)
        .unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("page 1")),
        "{err}"
    );
}

#[test]
fn missing_page_is_detected() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    // A "full image" that forgot page 2.
    seg.write_page(1, &[0x11; PS as usize]).unwrap();
    seg.write_commit(&CommitRecord {
        db_size: 2,
        page_size: PS,
        timestamp_ms: 1,
        full: true,
        wal: WalPos::default(),
    })
    .unwrap();
    let mut v = Validator::new();
    v.consume(&meta, 1, seg.len()).unwrap();
    let w = WalBuilder::new(PS, 1, 2);
    let err = v
        .check(mark(&w, 0), &Mem(w.bytes.clone()), &db)
        .unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("page 2") && m.contains("missing")),
        "{err}"
    );
}

#[test]
fn unanchored_and_unwritten_frames_are_skipped() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 1, 2);
    w.frame(1, 2, 0xaa);
    let wal = Mem(w.bytes.clone());
    // An incremental commit without a full image before it: nothing known to compare with.
    seg.write_page(1, &[0xaa; PS as usize]).unwrap();
    seg.write_commit(&CommitRecord {
        db_size: 2,
        page_size: PS,
        timestamp_ms: 1,
        full: false,
        wal: WalPos::default(),
    })
    .unwrap();
    let mut v = Validator::new();
    v.consume(&meta, 1, seg.len()).unwrap();
    assert_eq!(v.check(mark(&w, 1), &wal, &db).unwrap(), Outcome::Skipped);

    // Anchored, but the wal-index counts a frame the file does not hold yet.
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    assert_eq!(v.check(mark(&w, 2), &wal, &db).unwrap(), Outcome::Skipped);
    // A WAL of another generation than the mark: skipped too.
    let other = WalBuilder::new(PS, 7, 8);
    let m = Committed::Mark(
        WalIndexMark {
            max_frame: 1,
            salt1: 1,
            salt2: 2,
        },
        None,
    );
    assert_eq!(
        v.check(m, &Mem(other.bytes.clone()), &db).unwrap(),
        Outcome::Skipped
    );
}

#[test]
fn records_are_followed_across_segment_rotation() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 1, 2);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    w.frame(1, 2, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 1, &db).unwrap();
    // The uploader rotates: later records go to segment 2; segment 1 is sealed and deleted.
    drop(seg);
    std::fs::remove_file(meta.segment_path(1)).unwrap();
    let mut seg = SegmentWriter::open(&meta, 2).unwrap();
    w.frame(2, 2, 0xbb);
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &w, 2, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 2 });
}

#[test]
fn exclusive_mode_uses_the_capture_position() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 1, 2);
    let mut st = CaptureState::default();
    w.frame(1, 2, 0xaa).frame(2, 2, 0xbb);
    let wal = Mem(w.bytes.clone());
    st.capture(&wal, &db, &mut seg, 1, true, None).unwrap();
    let mut v = Validator::new();
    v.consume(&meta, 1, seg.len()).unwrap();
    let pos = st.pos.expect("captured");
    assert_eq!(
        v.check(Committed::Pos(pos), &wal, &db).unwrap(),
        Outcome::Checked { pages: 2 }
    );
    // A position one frame short of the WAL's last commit sees page 2 from the database
    // file, which differs from what was staged.
    let short = WalPos {
        offset: pos.offset - u64::from(PS) - 24,
        checksum: Checksum::default(),
        ..pos
    };
    let mut v2 = Validator::new();
    v2.consume(&meta, 1, seg.len()).unwrap();
    assert!(v2.check(Committed::Pos(short), &wal, &db).is_err());
}

/// SQLite's wal.test 18.2 writes WAL files with fixed salts over and over: the frame index
/// must follow the file, not the salts.
#[test]
fn a_new_wal_with_the_same_salts_is_reindexed() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 3]);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    let mut a = WalBuilder::new(PS, 22, 23);
    a.frame(1, 3, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &a, 1, &db).unwrap();
    let mut b = WalBuilder::new(PS, 22, 23);
    b.frame(2, 3, 0xbb);
    st.require_full("database file replaced"); // what the database layer decides
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &b, 1, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 3 });
}

/// Committed frames not yet in the file (an older generation's frame at their offset) are
/// not compared: neither the capture nor SQLite's readers through our file have them yet.
#[test]
fn committed_frames_not_in_the_file_are_skipped() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut st = CaptureState::default();
    let mut v = Validator::new();
    let mut old = WalBuilder::new(PS, 1, 2);
    old.frame(1, 2, 0x01).frame(2, 2, 0x02);
    let mut new = WalBuilder::new(PS, 2, 7);
    new.frame(1, 2, 0xaa);
    capture_and_check(&mut st, &mut v, &meta, &mut seg, &new, 1, &db).unwrap();
    let mut file = new.bytes.clone();
    file.extend_from_slice(&old.bytes[32 + 24 + PS as usize..]);
    assert_eq!(
        v.check(mark(&new, 2), &Mem(file), &db).unwrap(),
        Outcome::Skipped
    );
    new.frame(2, 2, 0xbb);
    let out = capture_and_check(&mut st, &mut v, &meta, &mut seg, &new, 2, &db).unwrap();
    assert_eq!(out, Outcome::Checked { pages: 2 });
}

/// A capture that stops short of the wal-index mark (a torn committed frame, walcrash.test 6)
/// is compared up to where it stopped; staying behind for good is reported.
#[test]
fn capture_behind_the_mark_is_compared_where_it_stopped_and_must_catch_up() {
    let (_d, meta, mut seg) = setup();
    let db = Mem(vec![0x11; PS as usize * 2]);
    let mut w = WalBuilder::new(PS, 5, 6);
    w.frame(1, 2, 0xaa).frame(1, 2, 0xaa);
    let mut torn = w.bytes.clone();
    let end = torn.len();
    torn[end - 100..].fill(0x77);
    let m = WalIndexMark {
        max_frame: 2,
        salt1: 5,
        salt2: 6,
    };
    let mut st = CaptureState::default();
    st.capture(&Mem(torn.clone()), &db, &mut seg, 1, true, Some(m))
        .unwrap();
    let mut v = Validator::new();
    v.consume(&meta, seg.seq, seg.len()).unwrap();
    let torn = Mem(torn);
    let check = |v: &mut Validator| v.check(Committed::Mark(m, st.pos), &torn, &db);
    assert_eq!(check(&mut v).unwrap(), Outcome::Checked { pages: 2 });
    assert_eq!(v.behind, 1);
    for _ in 1..MAX_BEHIND {
        check(&mut v).unwrap();
    }
    let err = check(&mut v).unwrap_err();
    assert!(
        matches!(&err, ValidateError::Mismatch(m) if m.contains("behind")),
        "{err}"
    );
}

//! Unit tests of `database`: the capture hooks against real files, checked by a recording
//! validator (see `validate`), as `LITESTREAM_VALIDATE=1` checks them in production.
use super::*;
use crate::capture::WalIndexMark;
use crate::validate::Validator;
use crate::wal::testing::WalBuilder;

const PS: u32 = 512;

fn open(dir: &Path, path: &Path) -> Arc<Database> {
    let cfg = crate::replicate_all::db_config_in(dir, "t", path);
    let client: Arc<dyn ReplicaClient> = crate::replica::client_for(&cfg.replica)
        .expect("file replica")
        .into();
    let db = Database::open(path.to_path_buf(), cfg, client, crate::uploader::wake).expect("open");
    db.inner.lock().validator = Some(Validator::recording());
    db.handle_opened();
    db
}

fn mark(w: &WalBuilder, max_frame: u32) -> Option<WalIndexMark> {
    Some(WalIndexMark {
        max_frame,
        salt1: w.header.salt1,
        salt2: w.header.salt2,
    })
}

/// (commit points validated, first mismatch)
/// `test.db` of two pages, opened, with one committed WAL frame (page 1, salts 1/2) captured.
fn one_commit() -> (tempfile::TempDir, std::path::PathBuf, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    std::fs::write(&path, page_image(&[0x11, 0x11])).unwrap();
    let mut w = WalBuilder::new(PS, 1, 2);
    w.frame(1, 2, 0xaa);
    std::fs::write(wal_path(&path), &w.bytes).unwrap();
    let db = open(dir.path(), &path);
    db.on_commit(mark(&w, 1));
    (dir, path, db)
}

fn validated(db: &Database) -> (u64, Option<String>) {
    let inner = db.inner.lock();
    let v = inner.validator.as_ref().expect("validator");
    (v.checks, v.mismatch.clone())
}

fn page_image(pages: &[u8]) -> Vec<u8> {
    pages
        .iter()
        .flat_map(|&b| std::iter::repeat_n(b, PS as usize))
        .collect()
}

/// SQLite's wal.test 12.4 copies a database and its WAL over a file this process had
/// replicated before. The copy's WAL must not be taken as the continuation of the old file's
/// closed generation: the next replica file must hold every page.
#[test]
fn database_replaced_after_its_generation_closed_gets_a_full_image() {
    let (_dir, path, db) = one_commit();
    assert_eq!(validated(&db), (1, None));

    // Checkpoint, then the last connection deletes the WAL: the generation ends cleanly.
    std::fs::write(&path, page_image(&[0xaa, 0x11])).unwrap();
    std::fs::remove_file(wal_path(&path)).unwrap();
    db.on_wal_deleted();
    assert!(db.inner.lock().capture.closed.is_some());

    // Another database (and its WAL) is copied over the file.
    std::fs::write(&path, page_image(&[0x33, 0x33, 0x33])).unwrap();
    let mut w2 = WalBuilder::new(PS, 7, 8);
    w2.frame(2, 3, 0xbb);
    std::fs::write(wal_path(&path), &w2.bytes).unwrap();
    db.on_commit(mark(&w2, 1));
    assert_eq!(validated(&db), (2, None));
}

/// The normal path: a generation closed by a WAL restart is continued incrementally when the
/// database file is unchanged.
#[test]
fn unchanged_database_continues_the_closed_generation() {
    let (_dir, path, db) = one_commit();
    std::fs::write(&path, page_image(&[0xaa, 0x11])).unwrap();
    db.before_wal_reset();
    let closed = db.inner.lock().capture.closed;
    assert!(closed.is_some());
    let mut w2 = WalBuilder::new(PS, 2, 9);
    w2.frame(2, 2, 0xbb);
    std::fs::write(wal_path(&path), &w2.bytes).unwrap();
    db.on_commit(mark(&w2, 1));
    assert_eq!(validated(&db), (2, None));
    let inner = db.inner.lock();
    assert!(inner.capture.need_full.is_none());
    assert_eq!(inner.capture.pos.map(|p| p.salt1), Some(2));
}

/// A WAL restart right after the uploader took the work stages only a closed-generation
/// marker. That marker must notify the uploader like a commit does: `dirty` set without a
/// notification left every later commit un-notified, and replication stalled (seen in a crash
/// trial: the staging segment grew to 1 GiB while nothing was shipped).
#[test]
fn a_closed_generation_marker_alone_notifies_the_uploader() {
    let (_dir, path, db) = one_commit();
    // The uploader takes the work.
    db.dirty.store(false, Ordering::Release);
    std::fs::write(&path, page_image(&[0xaa, 0x11])).unwrap();
    assert!(
        db.capture_now(false, true, None),
        "the marker is new work: the uploader must hear of it"
    );
    assert!(db.dirty.load(Ordering::Acquire));
    // Nothing new: no second notification.
    assert!(!db.capture_now(false, true, None));
}

/// oserror.test makes `test.db-wal` a directory: SQLite cannot use it, and neither is it a
/// WAL for us to read (it used to fail every capture with "Is a directory").
#[test]
fn a_directory_where_the_wal_belongs_is_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    std::fs::write(&path, page_image(&[0x11])).unwrap();
    std::fs::create_dir(wal_path(&path)).unwrap();
    let db = open(dir.path(), &path);
    let mut guard = db.inner.lock();
    let captured = db.capture_locked(&mut guard, true, false, None, 0);
    assert!(matches!(captured, Ok(0)), "{captured:?}");
}

/// Two processes on one meta directory (two `Database`s here: their stager locks are two open
/// file descriptions, which conflict as two processes' do). Only the holder stages; the other
/// captures nothing at its commit points, and takes over from the holder's recorded position
/// (incrementally, not with a full image) once the holder released the lock.
#[test]
fn only_the_stager_captures_and_the_next_stager_continues_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    std::fs::write(&path, page_image(&[0x11, 0x11])).unwrap();
    let mut w = WalBuilder::new(PS, 1, 2);
    w.frame(1, 2, 0xaa);
    std::fs::write(wal_path(&path), &w.bytes).unwrap();
    let a = open(dir.path(), &path);
    let b = open(dir.path(), &path);
    assert!(a.is_stager());
    assert!(!b.is_stager(), "the second opener waits");
    a.on_commit(mark(&w, 1));
    assert_eq!(a.progress.newest(), 1);

    // The other process commits frame 2: its commit point stages nothing.
    w.frame(2, 2, 0xbb);
    std::fs::write(wal_path(&path), &w.bytes).unwrap();
    b.on_commit(mark(&w, 2));
    assert!(!b.is_stager());
    assert_eq!(b.progress.newest(), 0, "a non-stager tracks nothing");
    assert!(
        b.inner.lock().segment.is_none(),
        "a non-stager writes no segment"
    );

    // The holder is still open: it keeps the lock.
    assert!(!a.release_stager_if_idle());
    a.inner.lock().open_handles = 0;
    a.dirty.store(false, Ordering::Release);
    assert!(a.release_stager_if_idle());
    assert!(!a.is_stager());

    // The next commit point of the other process takes over: it replays what the first one
    // staged (one transaction) and continues after it with frame 2 alone.
    b.on_commit(mark(&w, 2));
    assert!(b.is_stager());
    let inner = b.inner.lock();
    assert!(
        inner.capture.need_full.is_none(),
        "{:?}",
        inner.capture.need_full
    );
    let frame = u64::from(PS) + 24;
    assert_eq!(inner.capture.pos.map(|p| p.offset), Some(32 + 2 * frame));
    drop(inner);
    assert_eq!(b.progress.newest(), 2);
    assert_eq!(validated(&b), (1, None));
}

/// After the uploader asks for a full image, the next commit is not recorded lazily: a full
/// image can only be staged at a commit point, so that commit captures (and stages it) at once.
#[test]
fn a_full_image_request_stops_lazy_commits() {
    let (_dir, path, db) = one_commit();
    let mut w = WalBuilder::new(PS, 1, 2);
    w.frame(1, 2, 0xaa).frame(2, 2, 0xbb);
    std::fs::write(wal_path(&path), &w.bytes).unwrap();
    db.require_full("test: the chain restarts");
    db.on_commit(mark(&w, 2));
    let inner = db.inner.lock();
    assert!(
        inner.capture.need_full.is_none(),
        "the full image was staged"
    );
    let frame = u64::from(PS) + 24;
    assert_eq!(inner.capture.pos.map(|p| p.offset), Some(32 + 2 * frame));
}

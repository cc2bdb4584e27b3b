//! Inspecting databases with the plain system `sqlite3` (no extension), and opening
//! connections through the extension in this process with rusqlite.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rusqlite::{Connection, OpenFlags};

use crate::paths::{so_load_arg, sqlite3_shell};
use crate::procs::run_with_input;

/// Copies `db` (and its `-wal`, if any) into a fresh temp dir so that reading it cannot change
/// the original (a last close would checkpoint and delete the WAL of the original).
fn snapshot(db: &Path) -> (tempfile::TempDir, PathBuf) {
    assert!(db.is_file(), "database {} does not exist", db.display());
    let dir = tempfile::Builder::new()
        .prefix("litestream-inspect-")
        .tempdir()
        .expect("temp dir for a database snapshot");
    let copy = dir.path().join("snap.db");
    std::fs::copy(db, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", db.display()));
    let wal = sidecar(db, "-wal");
    if wal.is_file() {
        std::fs::copy(&wal, dir.path().join("snap.db-wal"))
            .unwrap_or_else(|e| panic!("copy {}: {e}", wal.display()));
    }
    (dir, copy)
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs `sql` with the plain `sqlite3` shell on a snapshot copy of `db`; returns stdout.
/// Panics if the shell fails or prints to stderr.
#[track_caller]
pub fn query(db: &Path, sql: &str) -> String {
    let (_dir, copy) = snapshot(db);
    let mut cmd = std::process::Command::new(sqlite3_shell());
    cmd.arg("-batch").arg("-bail").arg(&copy);
    let out = run_with_input(
        cmd,
        &format!("sqlite3 {}", db.display()),
        format!("{sql}\n").as_bytes(),
    );
    out.clean().stdout
}

/// `.dump` of `db` as the plain sqlite3 shell prints it.
#[track_caller]
pub fn dump(db: &Path) -> String {
    query(db, ".dump")
}

/// The output of `PRAGMA integrity_check` (`"ok"` when healthy).
#[track_caller]
pub fn integrity(db: &Path) -> String {
    query(db, "PRAGMA integrity_check;").trim().to_string()
}

/// True when `PRAGMA integrity_check` says `ok`.
#[track_caller]
pub fn integrity_ok(db: &Path) -> bool {
    integrity(db) == "ok"
}

/// `PRAGMA page_size` of `db`.
#[track_caller]
pub fn page_size(db: &Path) -> u32 {
    let s = query(db, "PRAGMA page_size;");
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("page_size of {}: {s:?}", db.display()))
}

/// Creates an empty WAL-mode database with `page_size` with the plain shell, before the
/// extension ever sees it (the page size cannot change once a database is in WAL mode, and the
/// extension switches databases to WAL when it opens them).
#[track_caller]
pub fn create_with_page_size(db: &Path, page_size: u32) {
    let mut cmd = std::process::Command::new(sqlite3_shell());
    cmd.arg("-batch").arg("-bail").arg(db);
    run_with_input(
        cmd,
        "sqlite3 (create db)",
        format!("PRAGMA page_size={page_size};\nPRAGMA journal_mode=wal;\n").as_bytes(),
    )
    .ok();
}

/// A SQLite URI for `path` (absolute), escaping the characters that URIs reserve.
pub fn file_uri(path: &Path) -> String {
    let mut s = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3f"),
            '#' => s.push_str("%23"),
            '&' => s.push_str("%26"),
            _ => s.push(c),
        }
    }
    s
}

/// The URI that opens `db` through the extension: `file:/abs/db?vfs=litestream`, plus the
/// zero-config `&replica=file:///abs/replica` when `replica` is given.
pub fn vfs_uri(db: &Path, replica: Option<&Path>) -> String {
    let mut uri = format!("{}?vfs=litestream", file_uri(db));
    if let Some(r) = replica {
        uri.push_str("&replica=");
        uri.push_str(&file_uri(r).replacen("file:", "file://", 1));
    }
    uri
}

/// Loads the extension into this process once (it stays loaded: the VFS is process-wide).
/// Panics with SQLite's message if loading fails.
pub fn load_extension_in_process() {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let conn = Connection::open_in_memory().expect("open an in-memory connection");
        let so = so_load_arg();
        // SAFETY: loading our own extension, built from this workspace, into this process;
        // extension loading is enabled only for this one connection, which is then closed.
        unsafe {
            conn.load_extension_enable()
                .expect("enable extension loading");
            conn.load_extension(&so, None::<&str>)
                .unwrap_or_else(|e| panic!("load_extension({so}) failed: {e}"));
            conn.load_extension_disable()
                .expect("disable extension loading");
        }
    });
}

/// Opens `db` through the extension (loading it first), with `SQLITE_OPEN_URI`; `replica`
/// adds the zero-config `replica=` URI parameter.
#[track_caller]
pub fn open_replicated(db: &Path, replica: Option<&Path>) -> Connection {
    load_extension_in_process();
    let uri = vfs_uri(db, replica);
    Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

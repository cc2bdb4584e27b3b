//! A plain SQLite connection of the system library (`libsqlite3.so.0`, loaded with dlopen by
//! [`super::osfile`]) for programs without the extension's API table: the CLI's
//! `restore -integrity-check`, and the unit tests that need a real SQLite.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use super::osfile::{lib_symbol, DlError};

type OpenV2 = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, *const c_char) -> c_int;
type Exec = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    Option<unsafe extern "C" fn(*mut c_void, c_int, *mut *mut c_char, *mut *mut c_char) -> c_int>,
    *mut c_void,
    *mut *mut c_char,
) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void) -> c_int;
type ErrMsg = unsafe extern "C" fn(*mut c_void) -> *const c_char;

/// `SQLITE_OPEN_READONLY`, `SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE` (sqlite3.h).
const OPEN_READONLY: c_int = 0x1;
const OPEN_READWRITE_CREATE: c_int = 0x2 | 0x4;

/// Why a statement of a [`LibConn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LibSqlError {
    #[error(transparent)]
    Library(#[from] DlError),
    #[error("{path}: not a path SQLite can take (it contains a NUL byte)")]
    BadPath { path: String },
    #[error("{what}: {message} (SQLite result code {code})")]
    Sqlite {
        what: String,
        code: c_int,
        message: String,
    },
}

/// An open connection; closed when dropped.
pub struct LibConn(*mut c_void);

unsafe extern "C" fn collect(
    out: *mut c_void,
    n: c_int,
    values: *mut *mut c_char,
    _names: *mut *mut c_char,
) -> c_int {
    // SAFETY: `out` is the Vec passed to exec below; `values` holds `n` nullable C strings.
    unsafe {
        let rows = &mut *(out as *mut Vec<String>);
        let mut row = Vec::new();
        for i in 0..n as usize {
            let v = *values.add(i);
            row.push(if v.is_null() {
                "NULL".to_string()
            } else {
                CStr::from_ptr(v).to_string_lossy().into_owned()
            });
        }
        rows.push(row.join("|"));
    }
    0
}

impl LibConn {
    /// Opens `path` read-only, or read-write (created if missing).
    pub fn open(path: &Path, read_only: bool) -> Result<LibConn, LibSqlError> {
        Self::open_with(path, read_only, None)
    }

    /// Opens `path` read-write (created if missing) through the VFS named `vfs`.
    pub fn open_vfs(path: &Path, vfs: &CStr) -> Result<LibConn, LibSqlError> {
        Self::open_with(path, false, Some(vfs))
    }

    fn open_with(path: &Path, read_only: bool, vfs: Option<&CStr>) -> Result<LibConn, LibSqlError> {
        let open: OpenV2 =
            // SAFETY: the symbol has this signature in SQLite 3.
            unsafe { std::mem::transmute(lib_symbol(c"sqlite3_open_v2")?) };
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            LibSqlError::BadPath {
                path: path.display().to_string(),
            }
        })?;
        let flags = if read_only {
            OPEN_READONLY
        } else {
            OPEN_READWRITE_CREATE
        };
        let mut db = std::ptr::null_mut();
        let vfs = vfs.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: a NUL-terminated path, a valid out pointer, a null or NUL-terminated VFS name.
        let rc = unsafe { open(c.as_ptr(), &mut db, flags, vfs) };
        // Even a failed open returns a handle (or null) that must be closed.
        let conn = LibConn(db);
        if rc != 0 {
            return Err(conn.error(format!("open {}", path.display()), rc));
        }
        Ok(conn)
    }

    /// Runs `sql`; returns the rows as `a|b|c` strings.
    pub fn exec(&self, sql: &str) -> Result<Vec<String>, LibSqlError> {
        let exec: Exec =
            // SAFETY: the symbol has this signature in SQLite 3.
            unsafe { std::mem::transmute(lib_symbol(c"sqlite3_exec")?) };
        let c = CString::new(sql).map_err(|_| LibSqlError::BadPath {
            path: sql.to_string(),
        })?;
        let mut rows: Vec<String> = Vec::new();
        // SAFETY: an open connection, NUL-terminated SQL, a callback matching `collect`.
        let rc = unsafe {
            exec(
                self.0,
                c.as_ptr(),
                Some(collect),
                &mut rows as *mut _ as *mut c_void,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(self.error(sql.to_string(), rc));
        }
        Ok(rows)
    }

    fn error(&self, what: String, code: c_int) -> LibSqlError {
        let message = match lib_symbol(c"sqlite3_errmsg") {
            Ok(sym) if !self.0.is_null() => {
                // SAFETY: the symbol has this signature in SQLite 3.
                let errmsg: ErrMsg = unsafe { std::mem::transmute(sym) };
                // SAFETY: a connection handle; errmsg returns a NUL-terminated string it owns.
                unsafe { CStr::from_ptr(errmsg(self.0)) }
                    .to_string_lossy()
                    .into_owned()
            }
            _ => "out of memory".to_string(),
        };
        LibSqlError::Sqlite {
            what,
            code,
            message,
        }
    }
}

impl Drop for LibConn {
    fn drop(&mut self) {
        if let Ok(sym) = lib_symbol(c"sqlite3_close") {
            // SAFETY: the symbol has this signature in SQLite 3.
            let close: Close = unsafe { std::mem::transmute(sym) };
            // SAFETY: the handle is open (or null, which close accepts) and closed once.
            unsafe { close(self.0) };
        }
    }
}

/// `SQLITE_CORRUPT` and `SQLITE_NOTADB` (sqlite3.h): the check's own answer on a damaged file.
const CORRUPT: c_int = 11;
const NOT_A_DATABASE: c_int = 26;

/// `PRAGMA quick_check` (`full`: `PRAGMA integrity_check`) of the database at `path`, opened
/// read-only: `Ok(None)` when SQLite answers `ok`, else the problems it lists (a file too
/// damaged for the check to run is one such problem).
pub fn integrity_check(path: &Path, full: bool) -> Result<Option<Vec<String>>, LibSqlError> {
    let conn = LibConn::open(path, true)?;
    let check = conn.exec(if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    });
    match check {
        Ok(rows) => Ok((rows != ["ok"]).then_some(rows)),
        Err(LibSqlError::Sqlite { code, message, .. })
            if code == CORRUPT || code == NOT_A_DATABASE =>
        {
            Ok(Some(vec![message]))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_check_of_a_good_and_a_damaged_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        {
            let c = LibConn::open(&db, false).unwrap();
            c.exec("PRAGMA page_size=1024; CREATE TABLE t(a); CREATE INDEX i ON t(a);")
                .unwrap();
            c.exec("INSERT INTO t SELECT randomblob(200) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) SELECT x FROM c)").unwrap();
        }
        assert!(integrity_check(&db, false).unwrap().is_none());
        assert!(integrity_check(&db, true).unwrap().is_none());
        // Zero the index's root page: the table and its index disagree.
        let c = LibConn::open(&db, true).unwrap();
        let root: u64 = c
            .exec("SELECT rootpage FROM sqlite_master WHERE name = 'i'")
            .unwrap()[0]
            .parse()
            .unwrap();
        drop(c);
        let mut bytes = std::fs::read(&db).unwrap();
        let at = ((root - 1) * 1024) as usize;
        bytes[at..at + 1024].fill(0);
        std::fs::write(&db, bytes).unwrap();
        let problems = integrity_check(&db, true).unwrap().expect("damage found");
        assert!(!problems.is_empty());
        let err = LibConn::open(&dir.path().join("missing/x.db"), true)
            .err()
            .unwrap();
        assert!(matches!(err, LibSqlError::Sqlite { .. }), "{err}");
    }
}

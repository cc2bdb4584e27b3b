//! The SQL surface, FFI side: the control database attached as `litestream` (so that
//! `PRAGMA litestream.checkpoint` parses), `SQLITE_FCNTL_PRAGMA` decoding, and the
//! `litestream_*()` SQL functions. The logic lives in [`crate::sql`]; see `docs/sql-surface.md`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libsqlite3_sys as ffi;

mod ctl_file;

pub(super) use self::ctl_file::{is_ctl_derived, is_ctl_name, open_ctl, CTL_FILE_SIZE};
use super::guard;
use crate::database::Database;
use crate::sql::{self, CheckpointMode, Conn, Via, WalCheckpoint, WalCheckpointError};

/// The control database's file name. `ATTACH 'litestream~ctl' AS litestream` opens it through
/// the connection's VFS (ours): no file is ever created, and it reads as an empty database.
pub const CTL_NAME: &CStr = c"litestream~ctl";

/// Per-connection state shared by the connection's main file and its control file.
pub struct ConnCtl {
    /// The connection; used only from within that connection's own calls.
    conn: *mut ffi::sqlite3,
    db: Option<Arc<Database>>,
    timeout_ms: AtomicU64,
}

// SAFETY: `conn` is only dereferenced (through SQLite) from calls SQLite makes on behalf of that
// connection, which SQLite serialises with the connection's mutex.
unsafe impl Send for ConnCtl {}
// SAFETY: as above; the other fields are thread-safe.
unsafe impl Sync for ConnCtl {}

impl ConnCtl {
    fn new(conn: *mut ffi::sqlite3, db: Option<Arc<Database>>) -> ConnCtl {
        ConnCtl {
            conn,
            db,
            timeout_ms: AtomicU64::new(sql::DEFAULT_CHECKPOINT_TIMEOUT.as_millis() as u64),
        }
    }
}

impl Conn for ConnCtl {
    fn database(&self) -> Option<Arc<Database>> {
        self.db.clone()
    }

    fn checkpoint_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    fn set_checkpoint_timeout(&self, d: Duration) {
        self.timeout_ms.store(
            d.as_millis().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    fn wal_checkpoint(&self, mode: CheckpointMode) -> Result<WalCheckpoint, WalCheckpointError> {
        if self.conn.is_null() {
            return Err(WalCheckpointError::NoConnection);
        }
        let (mut log, mut ckpt) = (-1, -1);
        // SAFETY: `conn` is the open connection this call is made on behalf of (see ConnCtl).
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.conn,
                c"main".as_ptr(),
                mode as c_int,
                &mut log,
                &mut ckpt,
            )
        };
        match rc {
            ffi::SQLITE_OK | ffi::SQLITE_BUSY => Ok(WalCheckpoint {
                busy: rc == ffi::SQLITE_BUSY,
                log,
                checkpointed: ckpt,
            }),
            _ => Err(WalCheckpointError::Sqlite {
                code: rc,
                // SAFETY: `conn` is valid; errmsg returns a NUL-terminated string owned by
                // SQLite.
                message: unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.conn)) }
                    .to_string_lossy()
                    .into_owned(),
            }),
        }
    }
}

/// Copies `s` into memory from `sqlite3_malloc64`, which SQLite frees (FCNTL_PRAGMA results).
fn sqlite_string(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    // SAFETY: sqlite3_malloc64 returns null or a block of the requested size.
    let p = unsafe { ffi::sqlite3_malloc64(bytes.len() as u64 + 1) } as *mut u8;
    if !p.is_null() {
        // SAFETY: `p` holds len + 1 bytes.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
    }
    p as *mut c_char
}

/// Answers `SQLITE_FCNTL_PRAGMA` (`arg` is SQLite's `char *aFcntl[3]`: result, name, value).
/// `None`: not one of ours, let SQLite (or the wrapped file) handle it.
///
/// # Safety
/// `arg` must be the FCNTL_PRAGMA argument array SQLite passed to xFileControl.
pub(super) unsafe fn answer_pragma(arg: *mut c_void, via: Via, conn: &dyn Conn) -> Option<c_int> {
    let a = arg as *mut *mut c_char;
    // SAFETY: per the contract, a[1] is the pragma name and a[2] its value or null.
    let (name, value) = unsafe { (*a.add(1), *a.add(2)) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null entries are NUL-terminated strings owned by SQLite for this call.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let value = (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_string_lossy());
    let result = sql::pragma(&name, value.as_deref(), via, conn)?;
    let (rc, text) = match result {
        Ok(t) => (ffi::SQLITE_OK, t),
        Err(e) => (ffi::SQLITE_ERROR, e.to_string()),
    };
    // SAFETY: a[0] receives a string SQLite frees with sqlite3_free.
    unsafe { *a = sqlite_string(&text) };
    Some(rc)
}

/// A pragma on a database file through our VFS (`PRAGMA litestream_status`): `ctl` is the
/// connection state of a main file (null for other files), `db` the managed database, if any.
///
/// # Safety
/// As [`answer_pragma`]; `ctl` is null or a live `Arc<ConnCtl>` pointer.
pub(super) unsafe fn file_pragma(
    ctl: *const ConnCtl,
    db: Option<Arc<Database>>,
    arg: *mut c_void,
) -> Option<c_int> {
    if ctl.is_null() {
        let detached = ConnCtl::new(ptr::null_mut(), db);
        // SAFETY: forwarded contract.
        unsafe { answer_pragma(arg, Via::Database, &detached) }
    } else {
        // SAFETY: `ctl` is alive while the file that owns it is open.
        unsafe { answer_pragma(arg, Via::Database, &*ctl) }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-connection setup

/// Binds a new connection whose main database we replicate: stores the connection state in
/// its main file and attaches the control database as `litestream`.
///
/// # Safety
/// `db` must be a connection being opened (called from the auto-extension).
pub(super) unsafe fn bind_connection(db: *mut ffi::sqlite3) {
    // SAFETY: `db` is valid per the contract.
    let Some(database) = (unsafe { super::vfs_shim::main_database(db) }) else {
        return;
    };
    let ctl = Arc::new(ConnCtl::new(db, Some(database)));
    // SAFETY: as above.
    unsafe { super::vfs_shim::set_main_ctl(db, Arc::clone(&ctl)) };
    let sql = c"ATTACH 'litestream~ctl' AS litestream";
    // SAFETY: `db` is valid and `sql` NUL-terminated.
    let rc = unsafe { ffi::sqlite3_exec(db, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: `db` is valid; errmsg is owned by SQLite.
        let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
            .to_string_lossy()
            .into_owned();
        tracing::debug!(error = %msg, "cannot attach the litestream control database; use PRAGMA litestream_checkpoint instead of the dotted form");
        return;
    }
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: FILE_POINTER writes one pointer.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db,
            c"litestream".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    if rc == ffi::SQLITE_OK {
        // SAFETY: FILE_POINTER handed out the attached database's file (or null).
        unsafe { ctl_file::bind(file, ctl) };
    }
}

// ---------------------------------------------------------------------------------------------
// SQL functions

/// The main database file name of the connection running a function (`None` for in-memory).
///
/// # Safety
/// `ctx` must be the context SQLite passed to a function.
unsafe fn main_path(ctx: *mut ffi::sqlite3_context) -> Option<String> {
    // SAFETY: per the contract.
    let db = unsafe { ffi::sqlite3_context_db_handle(ctx) };
    // SAFETY: `db` is the running connection.
    let p = unsafe { ffi::sqlite3_db_filename(db, c"main".as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string owned by SQLite.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    (!s.is_empty()).then_some(s)
}

/// # Safety
/// `ctx` must be a function context.
unsafe fn result_text(ctx: *mut ffi::sqlite3_context, s: &str) {
    // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before this returns.
    unsafe {
        ffi::sqlite3_result_text(
            ctx,
            s.as_ptr() as *const c_char,
            s.len() as c_int,
            ffi::SQLITE_TRANSIENT(),
        )
    };
}

/// # Safety
/// `ctx` must be a function context.
unsafe fn result_error(ctx: *mut ffi::sqlite3_context, s: &str) {
    // SAFETY: SQLite copies the message.
    unsafe { ffi::sqlite3_result_error(ctx, s.as_ptr() as *const c_char, s.len() as c_int) };
}

unsafe extern "C" fn fn_lag(
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _v: *mut *mut ffi::sqlite3_value,
) {
    guard((), || {
        // SAFETY: SQLite calls functions with a valid context.
        let lag =
            unsafe { main_path(ctx) }.and_then(|p| crate::status::lag_for_path(Path::new(&p)));
        // SAFETY: as above.
        unsafe {
            match lag {
                Some(l) => ffi::sqlite3_result_double(ctx, l),
                None => ffi::sqlite3_result_null(ctx),
            }
        }
    })
}

unsafe extern "C" fn fn_status(
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _v: *mut *mut ffi::sqlite3_value,
) {
    guard((), || {
        // SAFETY: SQLite calls functions with a valid context.
        let json =
            unsafe { main_path(ctx) }.and_then(|p| crate::status::json_for_path(Path::new(&p)));
        // SAFETY: as above.
        unsafe {
            match json {
                Some(j) => result_text(ctx, &j),
                None => ffi::sqlite3_result_null(ctx),
            }
        }
    })
}

unsafe extern "C" fn fn_checkpoint(
    ctx: *mut ffi::sqlite3_context,
    n: c_int,
    v: *mut *mut ffi::sqlite3_value,
) {
    guard((), || {
        // SAFETY: SQLite calls functions with a valid context and `n` arguments in `v`.
        let mode = (n >= 1)
            .then(|| unsafe { ffi::sqlite3_value_text(*v) })
            .filter(|p| !p.is_null())
            // SAFETY: value_text returns a NUL-terminated string valid until the next call.
            .map(|p| {
                unsafe { CStr::from_ptr(p as *const c_char) }
                    .to_string_lossy()
                    .into_owned()
            });
        // SAFETY: as above.
        let conn_ptr = unsafe { ffi::sqlite3_context_db_handle(ctx) };
        // Only through our VFS: a checkpoint from a connection that bypasses it would not be
        // seen by the capture.
        // SAFETY: `conn_ptr` is the running connection.
        let Some(db) = (unsafe { super::vfs_shim::main_database(conn_ptr) }) else {
            // SAFETY: as above.
            unsafe { result_error(ctx, &sql::not_replicated()) };
            return;
        };
        // SAFETY: `conn_ptr` is the running connection.
        let timeout = unsafe { super::vfs_shim::main_ctl(conn_ptr) }
            .map_or(sql::DEFAULT_CHECKPOINT_TIMEOUT, |c| c.checkpoint_timeout());
        let conn = ConnCtl::new(conn_ptr, Some(Arc::clone(&db)));
        conn.set_checkpoint_timeout(timeout);
        // SAFETY: as above.
        unsafe {
            match sql::checkpoint(&db, mode.as_deref(), &conn) {
                Ok(j) => result_text(ctx, &j),
                Err(e) => result_error(ctx, &e.to_string()),
            }
        }
    })
}

type SqlFn = unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);

/// Registers `litestream_lag()`, `litestream_status()` and `litestream_checkpoint([mode])` on
/// one connection.
///
/// # Safety
/// `db` must be a valid connection.
pub(super) unsafe fn register_functions(db: *mut ffi::sqlite3) {
    let fns: [(&CStr, c_int, c_int, SqlFn); 4] = [
        (c"litestream_lag", 0, 0, fn_lag),
        (c"litestream_status", 0, 0, fn_status),
        // Side effects: never from views, triggers or schema.
        (
            c"litestream_checkpoint",
            0,
            ffi::SQLITE_DIRECTONLY,
            fn_checkpoint,
        ),
        (
            c"litestream_checkpoint",
            1,
            ffi::SQLITE_DIRECTONLY,
            fn_checkpoint,
        ),
    ];
    for (name, n_arg, flags, f) in fns {
        // SAFETY: `db` is valid, `name` NUL-terminated, `f` has the xFunc signature.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                n_arg,
                ffi::SQLITE_UTF8 | flags,
                ptr::null_mut(),
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(function = ?name, rc, "cannot register SQL function");
        }
    }
}

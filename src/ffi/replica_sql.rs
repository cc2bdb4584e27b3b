//! Connections whose main database is a read replica (or a failed-over primary): a busy
//! timeout so that readers wait out an apply instead of failing, and the SQL function
//! `litestream_replica_status()` (one JSON text; see `docs/read-replicas.md`).

use std::ffi::{c_int, c_void, CStr};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use libsqlite3_sys as ffi;

use super::guard;
use crate::follower::lock::READER_BUSY_TIMEOUT;
use crate::follower::{routing, Follower};

/// Called by the auto-extension for every new connection.
///
/// # Safety
/// `db` must be a valid connection that SQLite is opening.
pub(crate) unsafe fn on_connection(db: *mut ffi::sqlite3) {
    // SAFETY: `db` is valid; the name returned is owned by the connection (or null).
    let p = unsafe { ffi::sqlite3_db_filename(db, c"main".as_ptr()) };
    if p.is_null() {
        return;
    }
    // SAFETY: non-null, NUL-terminated.
    let Ok(path) = unsafe { CStr::from_ptr(p) }.to_str() else {
        return;
    };
    if path.is_empty() {
        return;
    }
    let Some(follower) = routing::for_db_path(Path::new(path)) else {
        return;
    };
    let ms = READER_BUSY_TIMEOUT.as_millis() as c_int;
    // SAFETY: `db` is valid.
    unsafe { ffi::sqlite3_busy_timeout(db, ms) };
    let data = Arc::into_raw(follower) as *mut c_void;
    // SAFETY: `db` is valid; `data` is released by `destroy` when the function is dropped
    // (also when registration fails, as sqlite3_create_function_v2 documents).
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"litestream_replica_status".as_ptr(),
            0,
            ffi::SQLITE_UTF8,
            data,
            Some(status_fn),
            None,
            None,
            Some(destroy),
        )
    };
    if rc != ffi::SQLITE_OK {
        tracing::warn!(rc, "cannot register litestream_replica_status()");
    }
}

unsafe extern "C" fn status_fn(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    guard((), || {
        // SAFETY: the user data is the Arc registered with the function, alive until
        // `destroy`; borrowed here without changing the count.
        let f = ManuallyDrop::new(unsafe {
            Arc::from_raw(ffi::sqlite3_user_data(ctx) as *const Follower)
        });
        let json = f.status().to_json(SystemTime::now()).to_string();
        // SAFETY: `ctx` is the function's context; SQLite copies the text (TRANSIENT).
        unsafe {
            ffi::sqlite3_result_text(
                ctx,
                json.as_ptr() as *const _,
                json.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            )
        };
    })
}

unsafe extern "C" fn destroy(p: *mut c_void) {
    guard((), || {
        if !p.is_null() {
            // SAFETY: `p` came from Arc::into_raw in `on_connection`, released once here.
            drop(unsafe { Arc::from_raw(p as *const Follower) });
        }
    })
}

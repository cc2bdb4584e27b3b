//! Connection-level helpers of the VFS for the SQL surface (`super::super::sql`): finding our
//! main file of a connection, the connection state stored in it, and the name handling that
//! keeps the control database off the disk.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::{base_full_pathname, ls, LsFile, METHODS};
use crate::database::Database;
use crate::ffi::sql_shim::{self as sqlffi, ConnCtl};

/// Our main-database file of connection `db`, if it was opened through this VFS.
///
/// # Safety
/// `db` must be a valid open connection.
unsafe fn main_file<'a>(db: *mut ffi::sqlite3) -> Option<&'a mut LsFile> {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: FILE_POINTER writes one pointer into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    // SAFETY: a non-null file's pMethods identifies who opened it; only ours use METHODS.
    (rc == ffi::SQLITE_OK && !file.is_null() && std::ptr::eq(unsafe { (*file).pMethods }, &METHODS))
        // SAFETY: as above: one of our files, alive while the connection is open.
        .then(|| unsafe { ls(file) })
}

/// The replicated database behind the main file of `db`, if any.
///
/// # Safety
/// `db` must be a valid open connection.
pub(in crate::ffi) unsafe fn main_database(db: *mut ffi::sqlite3) -> Option<Arc<Database>> {
    // SAFETY: per the contract.
    let me = unsafe { main_file(db) }?;
    me.file.main_database().cloned()
}

/// Stores the connection state in the main file of `db` (replacing an earlier one).
///
/// # Safety
/// `db` must be a valid open connection.
pub(in crate::ffi) unsafe fn set_main_ctl(db: *mut ffi::sqlite3, ctl: Arc<ConnCtl>) {
    // SAFETY: per the contract.
    if let Some(me) = unsafe { main_file(db) } {
        if !me.ctl.is_null() {
            // SAFETY: the previous state came from Arc::into_raw.
            drop(unsafe { Arc::from_raw(me.ctl) });
        }
        me.ctl = Arc::into_raw(ctl);
    }
}

/// The connection state stored in the main file of `db`, if any.
///
/// # Safety
/// `db` must be a valid open connection.
pub(in crate::ffi) unsafe fn main_ctl(db: *mut ffi::sqlite3) -> Option<Arc<ConnCtl>> {
    // SAFETY: per the contract.
    let me = unsafe { main_file(db) }?;
    if me.ctl.is_null() {
        return None;
    }
    // SAFETY: owned by the open file; take one more reference for the caller.
    unsafe { Arc::increment_strong_count(me.ctl) };
    // SAFETY: the count was incremented just above.
    Some(unsafe { Arc::from_raw(me.ctl) })
}

pub(super) unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: `name` is null or a NUL-terminated name from SQLite.
    if unsafe { sqlffi::is_ctl_derived(name) } {
        // The control database has no journal or WAL on disk.
        // SAFETY: `out` is valid for one write.
        unsafe { *out = 0 };
        return ffi::SQLITE_OK;
    }
    // SAFETY: forwarding the same arguments.
    unsafe { super::redirected_access(vfs, name, flags, out) }
}

pub(super) unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is null or a NUL-terminated name from SQLite.
    if unsafe { sqlffi::is_ctl_name(name) } {
        // Kept as is: it names no file, so it shows the same in every directory.
        let bytes = sqlffi::CTL_NAME.to_bytes_with_nul();
        if bytes.len() > n.max(0) as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        // SAFETY: `out` holds `n` bytes, checked above.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, out, bytes.len()) };
        return ffi::SQLITE_OK;
    }
    // SAFETY: forwarding the same arguments.
    unsafe { base_full_pathname(vfs, name, n, out) }
}

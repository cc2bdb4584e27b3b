//! The VFS methods that only forward to the wrapped VFS (with the read-replica redirect of
//! `xAccess`). Each catches panics; none holds state.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use libsqlite3_sys as ffi;

use super::base_vfs;
use crate::ffi::guard;

/// Existence checks of a failed-over primary's `-journal`/`-wal` look beside the read replica
/// actually opened, so SQLite sees its hot journal (see `follower::routing`). Called by
/// `conn::x_access` for every name that is not the control database's.
pub(super) unsafe extern "C" fn redirected_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_ACCESS, || {
        let mut name = name;
        if !name.is_null() {
            // SAFETY: `name` is a NUL-terminated path from SQLite.
            let path = unsafe { CStr::from_ptr(name) }.to_string_lossy();
            if let Some(n) = crate::follower::routing::redirect_sidecar(&path) {
                name = n[4..].as_ptr() as *const c_char;
            }
        }
        // SAFETY: SQLite calls our methods with our VFS.
        let base = unsafe { base_vfs(vfs) };
        // SAFETY: forwarding to the wrapped VFS; `name` is SQLite's or a NUL-terminated
        // process-lifetime redirect.
        unsafe { ((*base).xAccess.expect("xAccess"))(base, name, flags, out) }
    })
}

macro_rules! forward_vfs {
    ($name:ident, $field:ident, $ret:ty, $err:expr, ($($arg:ident : $ty:ty),*)) => {
        pub(super) unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            guard($err, || {
                // SAFETY: SQLite calls our methods with our VFS.
                let base = unsafe { base_vfs(vfs) };
                // SAFETY: forwarding to the wrapped VFS with the same arguments; the method
                // exists because we only install forwarders for methods the base VFS has.
                unsafe { ((*base).$field.expect(stringify!($field)))(base $(, $arg)*) }
            })
        }
    };
}

forward_vfs!(base_full_pathname, xFullPathname, c_int, ffi::SQLITE_CANTOPEN, (name: *const c_char, n: c_int, out: *mut c_char));
forward_vfs!(x_dl_open, xDlOpen, *mut c_void, ptr::null_mut(), (name: *const c_char));
forward_vfs!(x_dl_error, xDlError, (), (), (n: c_int, msg: *mut c_char));
forward_vfs!(x_dl_close, xDlClose, (), (), (h: *mut c_void));
forward_vfs!(x_randomness, xRandomness, c_int, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_sleep, xSleep, c_int, 0, (us: c_int));
forward_vfs!(x_current_time, xCurrentTime, c_int, ffi::SQLITE_ERROR, (out: *mut f64));
forward_vfs!(x_get_last_error, xGetLastError, c_int, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_current_time_int64, xCurrentTimeInt64, c_int, ffi::SQLITE_ERROR, (out: *mut ffi::sqlite3_int64));
forward_vfs!(x_set_system_call, xSetSystemCall, c_int, ffi::SQLITE_ERROR, (name: *const c_char, f: ffi::sqlite3_syscall_ptr));
forward_vfs!(x_get_system_call, xGetSystemCall, ffi::sqlite3_syscall_ptr, None, (name: *const c_char));
forward_vfs!(x_next_system_call, xNextSystemCall, *const c_char, ptr::null(), (name: *const c_char));

pub(super) unsafe extern "C" fn x_dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    h: *mut c_void,
    sym: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    guard(None, || {
        // SAFETY: SQLite calls our methods with our VFS.
        let base = unsafe { base_vfs(vfs) };
        // SAFETY: forwarding to the wrapped VFS with the same arguments.
        unsafe { ((*base).xDlSym.expect("xDlSym"))(base, h, sym) }
    })
}

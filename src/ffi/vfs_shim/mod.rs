//! The `litestream` VFS: a shim over the default VFS. Every method forwards to the wrapped
//! VFS or file; the few that matter for replication first tell the file's safe
//! [`crate::vfs::OpenFile`], which decides what the call means for replication.
//!
//! Memory layout of one open file (SQLite allocates `szOsFile` bytes for it):
//! `[ LsFile (our header, starts with sqlite3_file) | the wrapped VFS's file ]`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::guard;
use crate::database::Database;
use crate::vfs::{self as hooks, OpenFile, Role, WAL_INDEX_HEADER_BYTES};

mod conn;
mod forward;
pub(super) use conn::{main_ctl, main_database, set_main_ctl};
use conn::{x_access, x_full_pathname};
use forward::{
    base_full_pathname, redirected_access, x_current_time, x_current_time_int64, x_dl_close,
    x_dl_error, x_dl_open, x_dl_sym, x_get_last_error, x_get_system_call, x_next_system_call,
    x_randomness, x_set_system_call, x_sleep,
};

/// The name users put in `?vfs=litestream`.
pub const VFS_NAME: &CStr = c"litestream";

#[repr(C)]
struct LsFile {
    base: ffi::sqlite3_file,
    /// What the file is to replication; [`OpenFile::other`] once released (no heap left to
    /// leak when SQLite frees the allocation without running destructors).
    file: OpenFile<Arc<Database>>,
    /// Region 0 of this handle's shm mapping (the wal-index header), null until mapped.
    shm0: *const u8,
    /// `Arc::into_raw` of the connection state of a main file (SQL surface); null otherwise.
    ctl: *const super::sql_shim::ConnCtl,
}

/// Offset of the wrapped file inside our allocation (keeps 8-byte alignment).
const INNER_OFFSET: usize = (std::mem::size_of::<LsFile>() + 7) & !7;
// The control database's file lives in the same allocation.
const _: () = assert!(super::sql_shim::CTL_FILE_SIZE <= INNER_OFFSET);

struct VfsPtr(*mut ffi::sqlite3_vfs);
// SAFETY: the registered VFS struct is leaked and never mutated after registration.
unsafe impl Send for VfsPtr {}
// SAFETY: as above: read-only after registration.
unsafe impl Sync for VfsPtr {}

static OURS: std::sync::OnceLock<VfsPtr> = std::sync::OnceLock::new();

/// # Safety
/// `f` must point to an `LsFile` allocation of `szOsFile` bytes.
unsafe fn inner(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: per the contract, the wrapped file lives at INNER_OFFSET inside the allocation.
    unsafe { (f as *mut u8).add(INNER_OFFSET) as *mut ffi::sqlite3_file }
}

/// # Safety
/// `f` must be a file opened by our xOpen, and the borrow must end before SQLite's next call
/// on `f` (each trampoline borrows it for its own duration only).
unsafe fn ls<'a>(f: *mut ffi::sqlite3_file) -> &'a mut LsFile {
    // SAFETY: our xOpen initialised the LsFile header at the start of the allocation, which
    // lives until xClose; SQLite serialises calls on one file.
    unsafe { &mut *(f as *mut LsFile) }
}

/// Tells the file's [`OpenFile`] about a call, without letting a panic escape: the call is
/// forwarded to the wrapped file whatever the hook did.
///
/// # Safety
/// `f` must be a file opened by our xOpen.
unsafe fn hook(f: *mut ffi::sqlite3_file, event: impl FnOnce(&mut OpenFile<Arc<Database>>)) {
    // SAFETY: per the contract; the borrow ends with this call.
    let me = unsafe { ls(f) };
    guard((), || event(&mut me.file));
}

/// Registers the VFS; `make_default`: as SQLite's default VFS (LD_PRELOAD, `vfs.default`).
/// Idempotent: a later call without `make_default` leaves a registration as it is (a default
/// stays the default), and registers the VFS again if the host unregistered it.
pub fn register(make_default: bool) -> Result<(), super::SetupError> {
    if let Some(v) = OURS.get() {
        // SAFETY: VFS_NAME is NUL-terminated; sqlite3_vfs_find only reads SQLite's list.
        let listed = std::ptr::eq(unsafe { ffi::sqlite3_vfs_find(VFS_NAME.as_ptr()) }, v.0);
        if make_default || !listed {
            // SAFETY: `v.0` is our leaked VFS, never freed; registering it again only moves
            // it within SQLite's list.
            unsafe { ffi::sqlite3_vfs_register(v.0, c_int::from(make_default)) };
        }
        return Ok(());
    }
    // SAFETY: null asks for the default VFS; the returned pointer is owned by SQLite and lives
    // for the process.
    let base = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if base.is_null() {
        return Err(super::SetupError::NoDefaultVfs);
    }
    // SAFETY: `base` is a valid registered VFS.
    let b = unsafe { &*base };
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: b.iVersion.min(3),
        szOsFile: (INNER_OFFSET as c_int) + b.szOsFile,
        mxPathname: b.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: base as *mut c_void,
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: b.xCurrentTimeInt64.map(|_| x_current_time_int64 as _),
        xSetSystemCall: b.xSetSystemCall.map(|_| x_set_system_call as _),
        xGetSystemCall: b.xGetSystemCall.map(|_| x_get_system_call as _),
        xNextSystemCall: b.xNextSystemCall.map(|_| x_next_system_call as _),
    });
    let raw = Box::into_raw(vfs);
    // SAFETY: `raw` is a fully initialised VFS that is never freed.
    let rc = unsafe { ffi::sqlite3_vfs_register(raw, c_int::from(make_default)) };
    if rc != ffi::SQLITE_OK {
        return Err(super::SetupError::RegisterVfs(rc));
    }
    let _ = OURS.set(VfsPtr(raw));
    Ok(())
}

/// True if the main database of `db` is opened through our VFS and replicated.
///
/// # Safety
/// `db` must be a valid open connection.
pub unsafe fn main_is_managed(db: *mut ffi::sqlite3) -> bool {
    // SAFETY: per the contract.
    unsafe { main_database(db) }.is_some()
}

/// The VFS ours wraps (the one the application's connections use), once registered.
pub(crate) fn wrapped_vfs() -> Option<*mut ffi::sqlite3_vfs> {
    // SAFETY: `v.0` is our registered VFS, leaked and never freed.
    OURS.get().map(|v| unsafe { base_vfs(v.0) })
}

/// The VFS `vfs` wraps.
///
/// # Safety
/// `vfs` must be our registered VFS (the one SQLite passes to our VFS methods).
unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: per the contract; pAppData of our VFS is the wrapped VFS, set at registration.
    unsafe { (*vfs).pAppData as *mut ffi::sqlite3_vfs }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: SQLite gave us `szOsFile` bytes at `file`; initialise our header first so
        // that a failed open leaves `pMethods` null.
        unsafe {
            ptr::write(
                file as *mut LsFile,
                LsFile {
                    base: ffi::sqlite3_file {
                        pMethods: ptr::null(),
                    },
                    file: OpenFile::other(),
                    shm0: ptr::null(),
                    ctl: ptr::null(),
                },
            );
        }
        // SAFETY: `name` is null or a NUL-terminated name from SQLite.
        if flags & hooks::OPEN_MAIN_DB != 0 && unsafe { super::sql_shim::is_ctl_name(name) } {
            // SAFETY: the allocation holds `szOsFile` >= INNER_OFFSET >= CTL_FILE_SIZE bytes.
            return unsafe { super::sql_shim::open_ctl(file, out_flags) };
        }
        // SAFETY: SQLite calls our methods with our VFS.
        let base = unsafe { base_vfs(vfs) };
        let path = (!name.is_null())
            // SAFETY: a non-null name is a NUL-terminated path from SQLite.
            .then(|| unsafe { CStr::from_ptr(name) }.to_str().ok())
            .flatten();
        let uri_replica = if !name.is_null() && flags & hooks::OPEN_MAIN_DB != 0 {
            // SAFETY: `name` is a main-db filename, which uri_parameter accepts.
            let p = unsafe { ffi::sqlite3_uri_parameter(name, c"replica".as_ptr()) };
            // SAFETY: a non-null result is a NUL-terminated string owned by SQLite.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        } else {
            None
        };
        let uri_restore = !name.is_null()
            && flags & hooks::OPEN_MAIN_DB != 0
            // SAFETY: `name` is a main-db filename, which uri_boolean accepts.
            && unsafe { ffi::sqlite3_uri_boolean(name, c"restore".as_ptr(), 0) } != 0;
        let role = match hooks::classify(path, flags, uri_replica.as_deref(), uri_restore) {
            Ok(r) => r,
            Err(msg) => {
                tracing::error!(db = path.unwrap_or(""), error = %msg, "cannot replicate this database; refusing to open it");
                return ffi::SQLITE_CANTOPEN;
            }
        };
        let (mut name, mut flags) = (name, flags);
        let opened = match role {
            Role::Main(db) => OpenFile::main(db),
            Role::Wal(db) => OpenFile::wal(db),
            Role::Other => OpenFile::other(),
            Role::ReadOnly { rename } => {
                flags =
                    (flags & !(hooks::OPEN_READWRITE | hooks::OPEN_CREATE)) | hooks::OPEN_READONLY;
                if let Some(n) = rename {
                    // A different file: its name carries no URI parameters to parse.
                    flags &= !hooks::OPEN_URI;
                    name = n[4..].as_ptr() as *const c_char;
                }
                OpenFile::other()
            }
        };
        // SAFETY: the header was initialised above.
        unsafe { ls(file) }.file = opened;
        // SAFETY: the wrapped file area is `szOsFile` of the base VFS, as registered.
        let rc =
            unsafe { ((*base).xOpen.expect("xOpen"))(base, name, inner(file), flags, out_flags) };
        // SAFETY: after the wrapped xOpen, its pMethods is set or null.
        if unsafe { (*inner(file)).pMethods }.is_null() {
            // Nothing to close later: release what we took.
            // SAFETY: `file` is initialised above.
            release(unsafe { ls(file) });
        } else {
            // SAFETY: as above.
            unsafe { (*file).pMethods = &METHODS };
        }
        rc
    })
}

fn release(f: &mut LsFile) {
    if !f.ctl.is_null() {
        // SAFETY: `ctl` came from Arc::into_raw in set_main_ctl; released once here.
        drop(unsafe { Arc::from_raw(f.ctl) });
        f.ctl = ptr::null();
    }
    let file = std::mem::replace(&mut f.file, OpenFile::other());
    guard((), || file.closed());
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_DELETE, || {
        if !name.is_null() {
            // SAFETY: `name` is a NUL-terminated path from SQLite.
            let path = unsafe { CStr::from_ptr(name) }.to_string_lossy();
            guard((), || hooks::before_delete(&path));
        }
        // SAFETY: SQLite calls our methods with our VFS.
        let base = unsafe { base_vfs(vfs) };
        // SAFETY: forwarding to the wrapped VFS with the same arguments.
        unsafe { ((*base).xDelete.expect("xDelete"))(base, name, sync_dir) }
    })
}

// ---------------------------------------------------------------------------------------------
// io methods

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(f_close),
    xRead: Some(f_read),
    xWrite: Some(f_write),
    xTruncate: Some(f_truncate),
    xSync: Some(f_sync),
    xFileSize: Some(f_file_size),
    xLock: Some(f_lock),
    xUnlock: Some(f_unlock),
    xCheckReservedLock: Some(f_check_reserved_lock),
    xFileControl: Some(f_file_control),
    xSectorSize: Some(f_sector_size),
    xDeviceCharacteristics: Some(f_device_characteristics),
    xShmMap: Some(f_shm_map),
    xShmLock: Some(f_shm_lock),
    xShmBarrier: Some(f_shm_barrier),
    xShmUnmap: Some(f_shm_unmap),
    xFetch: Some(f_fetch),
    xUnfetch: Some(f_unfetch),
};

/// Calls method `$m` of the wrapped file, or returns `$missing` if its version lacks it.
macro_rules! call_inner {
    ($f:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: `$f` is one of our files, so the wrapped file follows our header and its
        // pMethods is non-null (we install ours only then).
        unsafe {
            let i = inner($f);
            match (*(*i).pMethods).$m {
                Some(m) => m(i $(, $arg)*),
                None => $missing,
            }
        }
    }};
}

unsafe extern "C" fn f_close(f: *mut ffi::sqlite3_file) -> c_int {
    guard(ffi::SQLITE_IOERR_CLOSE, || {
        let rc = call_inner!(f, xClose, ffi::SQLITE_OK);
        // SAFETY: `f` is ours; after this SQLite frees the allocation.
        release(unsafe { ls(f) });
        rc
    })
}

unsafe extern "C" fn f_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    n: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        call_inner!(f, xRead, ffi::SQLITE_IOERR_READ, buf, n, off)
    })
}

unsafe extern "C" fn f_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_WRITE, || {
        // SAFETY: `f` is ours.
        unsafe { hook(f, |file| file.before_write(off)) };
        call_inner!(f, xWrite, ffi::SQLITE_IOERR_WRITE, buf, n, off)
    })
}

unsafe extern "C" fn f_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_IOERR_TRUNCATE, || {
        // SAFETY: `f` is ours.
        unsafe { hook(f, |file| file.before_truncate(size)) };
        call_inner!(f, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
    })
}

unsafe extern "C" fn f_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_FSYNC, || {
        call_inner!(f, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
    })
}

unsafe extern "C" fn f_file_size(f: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        call_inner!(f, xFileSize, ffi::SQLITE_IOERR_FSTAT, out)
    })
}

unsafe extern "C" fn f_lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_LOCK, || {
        call_inner!(f, xLock, ffi::SQLITE_IOERR_LOCK, level)
    })
}

unsafe extern "C" fn f_unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_UNLOCK, || {
        call_inner!(f, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
    })
}

unsafe extern "C" fn f_check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        call_inner!(
            f,
            xCheckReservedLock,
            ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
            out
        )
    })
}

unsafe extern "C" fn f_file_control(
    f: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        // SAFETY: `f` is ours.
        let me = unsafe { ls(f) };
        if op == ffi::SQLITE_FCNTL_PRAGMA {
            let db = me.file.main_database().cloned();
            // SAFETY: SQLite passes the FCNTL_PRAGMA array; `ctl` is null or owned by `me`.
            if let Some(rc) = unsafe { super::sql_shim::file_pragma(me.ctl, db, arg) } {
                return rc;
            }
        }
        // SAFETY: `f` is ours (`me` is not used after this point).
        unsafe { hook(f, |file| file.before_file_control(op)) };
        call_inner!(f, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
    })
}

unsafe extern "C" fn f_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    guard(4096, || call_inner!(f, xSectorSize, 4096))
}

unsafe extern "C" fn f_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    guard(0, || call_inner!(f, xDeviceCharacteristics, 0))
}

unsafe extern "C" fn f_shm_map(
    f: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_IOERR_SHMMAP, || {
        // SAFETY: `f` is ours.
        let me = unsafe { ls(f) };
        me.file.shm_mapped();
        let rc = call_inner!(
            f,
            xShmMap,
            ffi::SQLITE_IOERR_SHMMAP,
            region,
            size,
            extend,
            out
        );
        // SAFETY: on success `*out` is the mapped region (or null if not extended).
        if region == 0 && rc == ffi::SQLITE_OK && !unsafe { *out }.is_null() && size >= 96 {
            // SAFETY: as above.
            me.shm0 = unsafe { *out } as *const u8;
        }
        rc
    })
}

unsafe extern "C" fn f_shm_lock(
    f: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_SHMLOCK, || {
        // SAFETY: `f` is ours.
        let shm0 = unsafe { ls(f) }.shm0;
        let header = || {
            (!shm0.is_null()).then(|| {
                let mut hdr = [0u8; WAL_INDEX_HEADER_BYTES];
                // SAFETY: `shm0` maps at least 96 bytes (checked at xShmMap) until xShmUnmap;
                // the writer finished updating the header before releasing the write lock.
                unsafe { ptr::copy_nonoverlapping(shm0, hdr.as_mut_ptr(), hdr.len()) };
                hdr
            })
        };
        // SAFETY: `f` is ours.
        unsafe { hook(f, |file| file.before_shm_lock(offset, n, flags, header)) };
        call_inner!(f, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
    })
}

unsafe extern "C" fn f_shm_barrier(f: *mut ffi::sqlite3_file) {
    guard((), || call_inner!(f, xShmBarrier, ()))
}

unsafe extern "C" fn f_shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_SHMMAP, || {
        // SAFETY: `f` is ours.
        unsafe { ls(f) }.shm0 = ptr::null();
        call_inner!(f, xShmUnmap, ffi::SQLITE_OK, delete)
    })
}

unsafe extern "C" fn f_fetch(
    f: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    n: c_int,
    out: *mut *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_IOERR_MMAP, || {
        // Without xFetch in the wrapped file, SQLite falls back to xRead when *out is null.
        // SAFETY: `out` is valid for one pointer write.
        unsafe { *out = ptr::null_mut() };
        call_inner!(f, xFetch, ffi::SQLITE_OK, off, n, out)
    })
}

unsafe extern "C" fn f_unfetch(
    f: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    p: *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_IOERR_MMAP, || {
        call_inner!(f, xUnfetch, ffi::SQLITE_OK, off, p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_file_is_aligned() {
        assert_eq!(INNER_OFFSET % 8, 0);
        assert!(INNER_OFFSET >= std::mem::size_of::<LsFile>());
    }

    #[test]
    fn safe_side_constants_match_sqlite_h() {
        assert_eq!(
            crate::vfs::FCNTL_COMMIT_PHASETWO,
            ffi::SQLITE_FCNTL_COMMIT_PHASETWO
        );
        assert_eq!(hooks::OPEN_MAIN_DB, ffi::SQLITE_OPEN_MAIN_DB);
        assert_eq!(hooks::OPEN_WAL, ffi::SQLITE_OPEN_WAL);
        assert_eq!(hooks::OPEN_MAIN_JOURNAL, ffi::SQLITE_OPEN_MAIN_JOURNAL);
        assert_eq!(hooks::OPEN_READONLY, ffi::SQLITE_OPEN_READONLY);
        assert_eq!(hooks::OPEN_READWRITE, ffi::SQLITE_OPEN_READWRITE);
        assert_eq!(hooks::OPEN_CREATE, ffi::SQLITE_OPEN_CREATE);
        assert_eq!(hooks::OPEN_URI, ffi::SQLITE_OPEN_URI);
        assert_eq!(crate::vfs::SHM_UNLOCK, ffi::SQLITE_SHM_UNLOCK);
        assert_eq!(crate::vfs::SHM_EXCLUSIVE, ffi::SQLITE_SHM_EXCLUSIVE);
    }
}

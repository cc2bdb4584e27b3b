//! The control database `litestream~ctl` (attached as `litestream`): no file on disk, its own
//! io methods, one read-only empty page. See `docs/sql-surface.md`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::{answer_pragma, ConnCtl, CTL_NAME};
use crate::ffi::guard;
use crate::sql::Via;

/// Page size of the control database: SQLite's smallest. SQLite's page cache allocates its
/// first pages in one bulk when it reads a schema (20 pages by default), and a control
/// database is attached to every replicated connection, so its page size is what that bulk
/// costs per open database: about 16 KiB at 512 bytes instead of about 84 KiB at the default
/// 4096 an empty (zero-length) file would get.
const CTL_PAGE_SIZE: usize = 512;

/// The control database's only page: a valid empty database (header + an empty table b-tree
/// leaf for `sqlite_schema`) whose header says [`CTL_PAGE_SIZE`]. The text encoding is left
/// unset (0) so that it attaches to a main database of any encoding.
static CTL_PAGE: [u8; CTL_PAGE_SIZE] = ctl_page();

const fn ctl_page() -> [u8; CTL_PAGE_SIZE] {
    let mut p = [0u8; CTL_PAGE_SIZE];
    let magic = b"SQLite format 3\0";
    let mut i = 0;
    while i < magic.len() {
        p[i] = magic[i];
        i += 1;
    }
    let size = (CTL_PAGE_SIZE as u16).to_be_bytes();
    p[16] = size[0];
    p[17] = size[1];
    // File format write/read versions 1 (rollback journal), no reserved bytes, the fixed
    // payload fractions 64/32/32.
    p[18] = 1;
    p[19] = 1;
    p[21] = 64;
    p[22] = 32;
    p[23] = 32;
    // File change counter 1, database size 1 page, "version valid for" = the change counter
    // (so the size in the header is trusted), schema format 4.
    p[27] = 1;
    p[31] = 1;
    p[47] = 4;
    p[95] = 1;
    // Page 1's b-tree header: a table leaf (0x0D) with no cells whose content area starts at
    // the end of the page.
    p[100] = 0x0D;
    p[105] = size[0];
    p[106] = size[1];
    p
}

#[repr(C)]
struct CtlFile {
    base: ffi::sqlite3_file,
    /// `Arc::into_raw` of the connection state once bound (null before).
    ctl: *const ConnCtl,
}

/// Size the control file needs inside the VFS's `szOsFile` allocation.
pub(in crate::ffi) const CTL_FILE_SIZE: usize = std::mem::size_of::<CtlFile>();

static CTL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(c_close),
    xRead: Some(c_read),
    xWrite: Some(c_write),
    xTruncate: Some(c_truncate),
    xSync: Some(c_ok_int),
    xFileSize: Some(c_file_size),
    xLock: Some(c_ok_int),
    xUnlock: Some(c_ok_int),
    xCheckReservedLock: Some(c_check_reserved_lock),
    xFileControl: Some(c_file_control),
    xSectorSize: Some(c_sector_size),
    xDeviceCharacteristics: Some(c_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// True when `name` is the control database (as given to ATTACH, or as xFullPathname left it).
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
pub(in crate::ffi) unsafe fn is_ctl_name(name: *const c_char) -> bool {
    // SAFETY: per the contract.
    !name.is_null() && unsafe { CStr::from_ptr(name) } == CTL_NAME
}

/// True for the control database and the journal names SQLite derives from it.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
pub(in crate::ffi) unsafe fn is_ctl_derived(name: *const c_char) -> bool {
    // SAFETY: per the contract.
    !name.is_null()
        && unsafe { CStr::from_ptr(name) }
            .to_bytes()
            .starts_with(CTL_NAME.to_bytes())
}

/// xOpen of the control database: no real file; read-only, one empty page ([`CTL_PAGE`]).
///
/// # Safety
/// `file` must be a `szOsFile` allocation at least [`CTL_FILE_SIZE`] bytes long;
/// `out_flags` null or writable.
pub(in crate::ffi) unsafe fn open_ctl(
    file: *mut ffi::sqlite3_file,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        ptr::write(
            file as *mut CtlFile,
            CtlFile {
                base: ffi::sqlite3_file {
                    pMethods: &CTL_METHODS,
                },
                ctl: ptr::null(),
            },
        );
        if !out_flags.is_null() {
            *out_flags = ffi::SQLITE_OPEN_READONLY;
        }
    }
    ffi::SQLITE_OK
}

/// # Safety
/// `f` must be a control file opened by [`open_ctl`].
unsafe fn ctl_file<'a>(f: *mut ffi::sqlite3_file) -> &'a mut CtlFile {
    // SAFETY: per the contract; SQLite serialises calls on one file.
    unsafe { &mut *(f as *mut CtlFile) }
}

unsafe extern "C" fn c_close(f: *mut ffi::sqlite3_file) -> c_int {
    guard(ffi::SQLITE_OK, || {
        // SAFETY: `f` is a control file.
        let me = unsafe { ctl_file(f) };
        if !me.ctl.is_null() {
            // SAFETY: `ctl` came from Arc::into_raw when bound; released once here.
            drop(unsafe { Arc::from_raw(me.ctl) });
            me.ctl = ptr::null();
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn c_read(
    _f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    n: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let n = n.max(0) as usize;
    // SAFETY: SQLite passes a buffer of `n` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) };
    let have = ctl_read(off, out);
    if have == n {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_IOERR_SHORT_READ
    }
}

/// Copies the control database's bytes at `off` into `out`, zero-filling past its end (what
/// a short read must do); returns how many bytes were in the file.
fn ctl_read(off: i64, out: &mut [u8]) -> usize {
    let start = usize::try_from(off)
        .unwrap_or(usize::MAX)
        .min(CTL_PAGE_SIZE);
    let have = (CTL_PAGE_SIZE - start).min(out.len());
    out[..have].copy_from_slice(&CTL_PAGE[start..start + have]);
    out[have..].fill(0);
    have
}

unsafe extern "C" fn c_write(
    _f: *mut ffi::sqlite3_file,
    _buf: *const c_void,
    _n: c_int,
    _off: ffi::sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn c_truncate(_f: *mut ffi::sqlite3_file, _size: ffi::sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn c_ok_int(_f: *mut ffi::sqlite3_file, _x: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn c_file_size(
    _f: *mut ffi::sqlite3_file,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `out` is valid for one write.
    unsafe { *out = CTL_PAGE_SIZE as ffi::sqlite3_int64 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn c_check_reserved_lock(_f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: `out` is valid for one write.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn c_sector_size(_f: *mut ffi::sqlite3_file) -> c_int {
    512
}

unsafe extern "C" fn c_device_characteristics(_f: *mut ffi::sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn c_file_control(
    f: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        if op != ffi::SQLITE_FCNTL_PRAGMA {
            return ffi::SQLITE_NOTFOUND;
        }
        // SAFETY: `f` is a control file.
        let me = unsafe { ctl_file(f) };
        let unbound = ConnCtl::new(ptr::null_mut(), None);
        // SAFETY: a bound `ctl` lives until c_close.
        let conn: &ConnCtl = if me.ctl.is_null() {
            &unbound
        } else {
            unsafe { &*me.ctl }
        };
        // SAFETY: SQLite passes the FCNTL_PRAGMA argument array.
        unsafe { answer_pragma(arg, Via::Control, conn) }.unwrap_or(ffi::SQLITE_NOTFOUND)
    })
}

/// Stores the connection state `ctl` in `file` if it is an unbound control file (the one
/// `ATTACH 'litestream~ctl'` opened); any other file is left alone.
///
/// # Safety
/// `file` must be null or a file SQLite handed out for the running connection.
pub(super) unsafe fn bind(file: *mut ffi::sqlite3_file, ctl: Arc<ConnCtl>) {
    // SAFETY: a non-null file with our control methods is a CtlFile.
    if !file.is_null() && ptr::eq(unsafe { (*file).pMethods }, &CTL_METHODS) {
        // SAFETY: as above.
        let me = unsafe { ctl_file(file) };
        if me.ctl.is_null() {
            me.ctl = Arc::into_raw(ctl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_an_empty_database_of_512_byte_pages() {
        let mut page = [0xAAu8; CTL_PAGE_SIZE];
        assert_eq!(ctl_read(0, &mut page), CTL_PAGE_SIZE);
        assert_eq!(&page[..16], b"SQLite format 3\0");
        assert_eq!(u16::from_be_bytes([page[16], page[17]]), 512);
        // Database size 1 page, trusted: "version valid for" equals the change counter.
        assert_eq!(&page[28..32], &1u32.to_be_bytes());
        assert_eq!(&page[24..28], &page[92..96]);
        // Text encoding unset, so any main database's encoding matches.
        assert_eq!(&page[56..60], &[0; 4]);
        // sqlite_schema: a table leaf without cells.
        assert_eq!(page[100], 0x0D);
        assert_eq!(&page[103..105], &[0, 0]);
    }

    #[test]
    fn reads_past_the_page_are_short_and_zero_filled() {
        let mut buf = [0xAAu8; 100];
        assert_eq!(ctl_read(500, &mut buf), 12);
        assert!(buf[12..].iter().all(|&b| b == 0));
        assert_eq!(ctl_read(4096, &mut buf), 0);
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(ctl_read(-1, &mut buf), 0);
    }
}

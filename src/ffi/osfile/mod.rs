//! A database file opened through SQLite's default VFS (not through a connection): positioned
//! reads and writes, size, fsync and SQLite's own locks (`xLock`/`xUnlock`), for the read
//! replica follower ([`crate::follower`]).
//!
//! Why the VFS and not `fcntl` directly: POSIX locks belong to the process, and closing any
//! descriptor of a file drops all of them. SQLite's unix VFS tracks locks per inode for the
//! whole process, so a file opened through it is coordinated with every SQLite connection of
//! this process on the same database, and its locks are the ones other processes see.
//!
//! Which SQLite: inside the extension, the VFS our `litestream` VFS wraps (the one the
//! application's connections use); in a program without the extension (the `litestream` CLI,
//! unit tests), `libsqlite3.so.0` loaded with `dlopen`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

use crate::follower::apply_batch::DbFile;
use crate::follower::lock::LockLevel;
use crate::follower::sys::{DefaultVfs, VfsFile};

/// The shared library loaded when the extension is not (SONAME of Debian's libsqlite3).
const LIBSQLITE3: &CStr = c"libsqlite3.so.0";

struct LibPtr(*mut c_void);
// SAFETY: a dlopen handle is process-wide and never closed.
unsafe impl Send for LibPtr {}
// SAFETY: as above: only passed to dlsym, which is thread-safe.
unsafe impl Sync for LibPtr {}

/// Why SQLite's shared library or one of its symbols cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DlError {
    #[error("cannot load {}: {reason} (install libsqlite3-0)", LIBSQLITE3.to_string_lossy())]
    Open { reason: String },
    #[error("{} has no {symbol}", LIBSQLITE3.to_string_lossy())]
    Symbol { symbol: String },
}

static LIB: OnceLock<Result<LibPtr, DlError>> = OnceLock::new();

fn dlerror_text() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated, valid until the next dl* call on this thread.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A symbol of the dlopen'ed `libsqlite3.so.0`.
pub(super) fn lib_symbol(name: &CStr) -> Result<*mut c_void, DlError> {
    let lib = LIB
        .get_or_init(|| {
            // SAFETY: dlopen with a constant NUL-terminated name; the handle is never closed.
            let h = unsafe { libc::dlopen(LIBSQLITE3.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if h.is_null() {
                Err(DlError::Open {
                    reason: dlerror_text(),
                })
            } else {
                Ok(LibPtr(h))
            }
        })
        .as_ref()
        .map_err(Clone::clone)?;
    // SAFETY: `lib.0` is a live dlopen handle and `name` is NUL-terminated.
    let sym = unsafe { libc::dlsym(lib.0, name.as_ptr()) };
    if sym.is_null() {
        return Err(DlError::Symbol {
            symbol: name.to_string_lossy().into_owned(),
        });
    }
    Ok(sym)
}

/// The default VFS of the SQLite this process uses.
fn default_vfs() -> io::Result<*mut ffi::sqlite3_vfs> {
    if let Some(v) = super::vfs_shim::wrapped_vfs() {
        return Ok(v);
    }
    let sym = lib_symbol(c"sqlite3_vfs_find").map_err(io::Error::other)?;
    // SAFETY: `sqlite3_vfs_find` has this signature in every SQLite 3 release.
    let find: unsafe extern "C" fn(*const c_char) -> *mut ffi::sqlite3_vfs =
        unsafe { std::mem::transmute(sym) };
    // SAFETY: null asks for the default VFS; SQLite initialises itself if needed.
    let vfs = unsafe { find(std::ptr::null()) };
    if vfs.is_null() {
        return Err(io::Error::other("SQLite has no default VFS"));
    }
    Ok(vfs)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn sqlite_err(op: &str, path: &Path, rc: c_int) -> io::Error {
    io::Error::other(format!(
        "SQLite VFS {op} on {} failed (error code {rc})",
        path.display()
    ))
}

/// Result codes this module compares against (sqlite3.h).
const SQLITE_OK: c_int = 0;
const SQLITE_BUSY: c_int = 5;
const SQLITE_IOERR_SHORT_READ: c_int = 10 | (2 << 8);

/// The absolute, canonical name the default VFS gives `path` (what SQLite's pager uses to
/// name the `-journal` of that database).
pub fn full_pathname(path: &Path) -> io::Result<PathBuf> {
    let vfs = default_vfs()?;
    let c = c_path(path)?;
    // SAFETY: `vfs` is a registered VFS; mxPathname is its documented buffer bound.
    let max = unsafe { (*vfs).mxPathname }.max(512) as usize + 1;
    let mut buf = vec![0u8; max];
    // SAFETY: `buf` has `max` bytes; the VFS writes a NUL-terminated path into it.
    let rc = unsafe {
        ((*vfs)
            .xFullPathname
            .ok_or_else(|| io::Error::other("VFS has no xFullPathname"))?)(
            vfs,
            c.as_ptr(),
            max as c_int,
            buf.as_mut_ptr() as *mut c_char,
        )
    };
    // SQLITE_OK_SYMLINK (OK with extended bits) is success too.
    if rc & 0xff != SQLITE_OK {
        return Err(sqlite_err("xFullPathname", path, rc));
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&buf[..len])))
}

/// SQLite's default VFS as the follower uses it, installed by [`install_for_followers`].
struct OsVfs;

impl DefaultVfs for OsVfs {
    fn open(&self, path: &Path) -> io::Result<VfsFile> {
        Ok(Box::new(OsFile::open(path)?))
    }

    fn full_pathname(&self, path: &Path) -> io::Result<PathBuf> {
        full_pathname(path)
    }
}

/// Lets read replicas of this process reach SQLite's default VFS ([`crate::follower::sys`]).
pub fn install_for_followers() {
    static OS_VFS: OsVfs = OsVfs;
    crate::follower::sys::install(&OS_VFS);
}

/// A database file opened read-write through the default VFS. Used by one thread at a time.
pub struct OsFile {
    vfs: *mut ffi::sqlite3_vfs,
    /// The `sqlite3_file` the VFS fills (`szOsFile` bytes, 8-byte aligned).
    file: *mut ffi::sqlite3_file,
    mem_words: usize,
    /// The name passed to xOpen, kept alive: the unix VFS stores a pointer to it.
    name: *mut [u8],
    path: PathBuf,
}

// SAFETY: the VFS file is used by one thread at a time (`&mut self` for every operation);
// SQLite's unix VFS protects its process-wide lock tables with its own mutexes.
unsafe impl Send for OsFile {}

impl OsFile {
    /// Opens an existing database file for reading and writing (never creates it).
    pub fn open(path: &Path) -> io::Result<OsFile> {
        let vfs = default_vfs()?;
        let full = full_pathname(path)?;
        // SQLite's layout for database names: four NUL bytes, the name, then an empty list of
        // URI parameters (so that a VFS looking up a parameter finds none).
        let mut name = vec![0u8; 4];
        name.extend_from_slice(full.as_os_str().as_bytes());
        name.extend_from_slice(&[0, 0, 0, 0]);
        let name: *mut [u8] = Box::into_raw(name.into_boxed_slice());
        // SAFETY: `vfs` is a registered VFS.
        let sz = unsafe { (*vfs).szOsFile }.max(0) as usize;
        let mem_words = sz.div_ceil(8).max(1);
        let mem: Box<[u64]> = vec![0u64; mem_words].into_boxed_slice();
        let file = Box::into_raw(mem) as *mut u64 as *mut ffi::sqlite3_file;
        let mut me = OsFile {
            vfs,
            file,
            mem_words,
            name,
            path: full,
        };
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_MAIN_DB;
        let mut out_flags: c_int = 0;
        // SAFETY: `file` points to szOsFile zeroed bytes; the name (after the 4 NULs) is
        // NUL-terminated and lives until Drop; xOpen is present in every VFS.
        let rc = unsafe {
            let open = (*vfs)
                .xOpen
                .ok_or_else(|| io::Error::other("VFS has no xOpen"))?;
            open(
                vfs,
                ((*me.name).as_ptr() as *const c_char).add(4),
                file,
                flags,
                &mut out_flags,
            )
        };
        // SAFETY: after xOpen, pMethods is null (failed) or the file's method table.
        let opened = !unsafe { (*file).pMethods }.is_null();
        if rc != SQLITE_OK || !opened {
            if !opened {
                // Nothing to close: make Drop skip xClose.
                me.vfs = std::ptr::null_mut();
            }
            return Err(sqlite_err("xOpen", &me.path, rc));
        }
        if out_flags & ffi::SQLITE_OPEN_READONLY != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} can only be opened read-only", me.path.display()),
            ));
        }
        Ok(me)
    }

    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the file is open (checked in `open`), so pMethods is a valid table that
        // lives as long as the VFS.
        unsafe { &*(*self.file).pMethods }
    }

    fn check(&self, op: &str, rc: c_int) -> io::Result<()> {
        if rc == SQLITE_OK {
            Ok(())
        } else {
            Err(sqlite_err(op, &self.path, rc))
        }
    }

    fn len_c(buf_len: usize) -> io::Result<c_int> {
        c_int::try_from(buf_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))
    }
}

impl DbFile for OsFile {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let f = self
            .methods()
            .xRead
            .ok_or_else(|| io::Error::other("no xRead"))?;
        // SAFETY: `buf` is valid for `len` bytes; the file is open.
        let rc = unsafe {
            f(
                self.file,
                buf.as_mut_ptr() as *mut c_void,
                Self::len_c(buf.len())?,
                off as i64,
            )
        };
        // A short read zero-fills the rest of the buffer: reading past the end is not an error.
        if rc == SQLITE_IOERR_SHORT_READ {
            return Ok(());
        }
        self.check("xRead", rc)
    }

    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let f = self
            .methods()
            .xWrite
            .ok_or_else(|| io::Error::other("no xWrite"))?;
        // SAFETY: `buf` is valid for `len` bytes; the file is open.
        let rc = unsafe {
            f(
                self.file,
                buf.as_ptr() as *const c_void,
                Self::len_c(buf.len())?,
                off as i64,
            )
        };
        self.check("xWrite", rc)
    }

    fn size(&mut self) -> io::Result<u64> {
        let f = self
            .methods()
            .xFileSize
            .ok_or_else(|| io::Error::other("no xFileSize"))?;
        let mut size: ffi::sqlite3_int64 = 0;
        // SAFETY: the file is open; `size` is a valid out pointer.
        let rc = unsafe { f(self.file, &mut size) };
        self.check("xFileSize", rc)?;
        Ok(size.max(0) as u64)
    }

    fn truncate(&mut self, size: u64) -> io::Result<()> {
        let f = self
            .methods()
            .xTruncate
            .ok_or_else(|| io::Error::other("no xTruncate"))?;
        // SAFETY: the file is open.
        let rc = unsafe { f(self.file, size as i64) };
        self.check("xTruncate", rc)
    }

    fn sync(&mut self) -> io::Result<()> {
        let f = self
            .methods()
            .xSync
            .ok_or_else(|| io::Error::other("no xSync"))?;
        // SAFETY: the file is open. NORMAL is a full fsync (the size may have changed).
        let rc = unsafe { f(self.file, ffi::SQLITE_SYNC_NORMAL) };
        self.check("xSync", rc)
    }

    fn lock(&mut self, level: LockLevel) -> io::Result<bool> {
        let f = self
            .methods()
            .xLock
            .ok_or_else(|| io::Error::other("no xLock"))?;
        // SAFETY: the file is open; `level` is a valid SQLITE_LOCK_* value.
        let rc = unsafe { f(self.file, level as c_int) };
        if rc & 0xff == SQLITE_BUSY {
            return Ok(false);
        }
        self.check("xLock", rc).map(|()| true)
    }

    fn unlock(&mut self, level: LockLevel) -> io::Result<()> {
        let f = self
            .methods()
            .xUnlock
            .ok_or_else(|| io::Error::other("no xUnlock"))?;
        // SAFETY: the file is open; `level` is NONE or SHARED.
        let rc = unsafe { f(self.file, level as c_int) };
        self.check("xUnlock", rc)
    }

    fn sector_size(&mut self) -> u32 {
        match self.methods().xSectorSize {
            // SAFETY: the file is open.
            Some(f) => unsafe { f(self.file) }.max(0) as u32,
            None => 0,
        }
    }
}

impl Drop for OsFile {
    fn drop(&mut self) {
        if !self.vfs.is_null() {
            if let Some(close) = self.methods().xClose {
                // SAFETY: the file is open and closed exactly once. The unix VFS keeps the
                // descriptor open while other connections of this process hold locks on it.
                let rc = unsafe { close(self.file) };
                if rc != SQLITE_OK {
                    tracing::warn!(path = %self.path.display(), rc, "closing the replica file failed");
                }
            }
        }
        // SAFETY: both came from Box::into_raw in `open` with these exact sizes.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.file as *mut u64,
                self.mem_words,
            )));
            drop(Box::from_raw(self.name));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

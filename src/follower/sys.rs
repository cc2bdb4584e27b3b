//! How the follower reaches SQLite's default VFS: opening the database file (positioned I/O
//! and SQLite's own locks, [`DbFile`]) and resolving its full name. The implementation is
//! `crate::ffi::osfile` (the only place with `unsafe`); whoever starts followers (the
//! extension's entry point, the `litestream` CLI) installs it once per process with
//! [`install`], so this layer never names the FFI layer above it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::apply_batch::DbFile;

/// A database file opened through the default VFS, used by one thread at a time.
pub type VfsFile = Box<dyn DbFile + Send>;

/// SQLite's default VFS as the follower uses it.
pub trait DefaultVfs: Send + Sync {
    /// Opens the database file at `path` read-write through the VFS.
    fn open(&self, path: &Path) -> io::Result<VfsFile>;
    /// The VFS's full name of `path` (what SQLite names its `-journal` after).
    fn full_pathname(&self, path: &Path) -> io::Result<PathBuf>;
}

static VFS: OnceLock<&'static dyn DefaultVfs> = OnceLock::new();

/// Installs the default VFS access for this process; later calls are ignored.
pub fn install(vfs: &'static dyn DefaultVfs) {
    let _ = VFS.set(vfs);
}

/// The installed default VFS access.
pub(crate) fn vfs() -> io::Result<&'static dyn DefaultVfs> {
    VFS.get().copied().ok_or_else(|| {
        io::Error::other(
            "read replicas are not available: SQLite's default VFS was not installed \
             (load the extension or use the litestream command)",
        )
    })
}

/// Opens `path` through the installed default VFS.
pub(crate) fn open(path: &Path) -> io::Result<VfsFile> {
    vfs()?.open(path)
}

/// The installed default VFS's full name of `path`.
pub(crate) fn full_pathname(path: &Path) -> io::Result<PathBuf> {
    vfs()?.full_pathname(path)
}

/// Takes an exclusive `flock` on `f`, waiting for it (released when `f` is closed). flock
/// locks belong to the open file, so they exclude other threads and processes alike.
pub(crate) fn flock_exclusive(f: &File) -> io::Result<()> {
    loop {
        match f.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

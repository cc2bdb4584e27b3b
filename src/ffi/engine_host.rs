//! The replication engine inside the `litestream` binary itself, for `replicate` without
//! `-exec` (sidecar mode, `docs/sidecar.md`): the binary loads the system `libsqlite3.so.0`
//! (as [`super::osfile`] does), hands SQLite its own extension entry, and then opens
//! databases through the `litestream` VFS like any program with the extension loaded.
//! Also the one lock probe the sidecar needs on SQLite's `-shm` file.

use std::ffi::{c_char, c_int};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

use super::osfile::{lib_symbol, DlError};
use super::sqlite_lib::{LibConn, LibSqlError};

/// Why the engine cannot run in this process.
#[derive(Debug, thiserror::Error)]
pub enum EngineHostError {
    #[error(transparent)]
    Library(#[from] DlError),
    #[error("cannot register the replication engine with SQLite (SQLite error {0})")]
    Register(c_int),
    #[error("cannot start the replication engine: {0}")]
    Setup(String),
    #[error(transparent)]
    Sql(#[from] LibSqlError),
}

/// The outcome of the engine's first entry (API table, configuration, VFS registration).
static ENTRY: OnceLock<Result<(), String>> = OnceLock::new();

/// The auto-extension that gives the engine SQLite's routine table on the first open.
unsafe extern "C" fn engine_entry(
    _db: *mut ffi::sqlite3,
    _pz_err: *mut *mut c_char,
    p_api: *const ffi::sqlite3_api_routines,
) -> c_int {
    super::guard(ffi::SQLITE_OK, || {
        ENTRY.get_or_init(|| {
            // SAFETY: SQLite passes its routine table to auto-extensions.
            unsafe { super::init_api(p_api) }.map_err(|e| e.to_string())?;
            crate::config::global().map_err(|e| e.to_string())?;
            super::setup().map_err(|e| e.to_string())
        });
        ffi::SQLITE_OK
    })
}

/// Loads the engine into this process: afterwards the `litestream` VFS exists and the
/// databases of the configuration (`LITESTREAM_CONFIG`) are replicated by this process when
/// opened through it. Idempotent.
pub fn load_engine() -> Result<(), EngineHostError> {
    if ENTRY.get().is_none() {
        type AutoExtension = unsafe extern "C" fn(Option<unsafe extern "C" fn()>) -> c_int;
        // SAFETY: `sqlite3_auto_extension` has this signature in SQLite 3, and `engine_entry`
        // the signature it calls auto-extensions with.
        let rc = unsafe {
            let auto: AutoExtension = std::mem::transmute(lib_symbol(c"sqlite3_auto_extension")?);
            auto(Some(super::as_auto_extension(engine_entry)))
        };
        if rc != ffi::SQLITE_OK {
            return Err(EngineHostError::Register(rc));
        }
        // The first connection runs the auto-extension.
        drop(LibConn::open(Path::new(":memory:"), false)?);
    }
    match ENTRY.get() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(EngineHostError::Setup(e.clone())),
        None => Err(EngineHostError::Setup(
            "SQLite did not run the engine's entry point".into(),
        )),
    }
}

/// The bytes of the `-shm` file SQLite locks while a connection writes the WAL and while one
/// checkpoints (WALINDEX_LOCK_OFFSET 120 + WAL_WRITE_LOCK 0 and WAL_CKPT_LOCK 1, in wal.c).
const WRITE_AND_CHECKPOINT_LOCKS: (libc::off_t, libc::off_t) = (120, 2);

/// True while another process holds SQLite's WAL write lock or checkpoint lock on the database
/// whose `-shm` file is `shm`: a transaction or a checkpoint is under way, and the wal-index
/// header is final only once it ends. Locks of this process are not reported (POSIX locks
/// never conflict with their own process's). The caller must keep `shm` open while this
/// process's connections use the database: closing any descriptor of the file drops all of the
/// process's locks on it.
pub fn write_or_checkpoint_elsewhere(shm: &File) -> io::Result<bool> {
    // SAFETY: a zeroed flock is a valid value to fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = WRITE_AND_CHECKPOINT_LOCKS.0;
    fl.l_len = WRITE_AND_CHECKPOINT_LOCKS.1;
    // SAFETY: `shm` is an open descriptor and `fl` a valid flock for F_GETLK to fill in.
    if unsafe { libc::fcntl(shm.as_raw_fd(), libc::F_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_of_another_process_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-shm");
        std::fs::write(&path, [0u8; 256]).unwrap();
        let f = File::options().read(true).write(true).open(&path).unwrap();
        assert!(!write_or_checkpoint_elsewhere(&f).unwrap(), "unlocked");
        // Another process: flock(1) cannot take POSIX locks; python's fcntl.lockf can.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time;f=open(sys.argv[1],'r+b');fcntl.lockf(f,fcntl.LOCK_EX,1,121);print('locked',flush=True);time.sleep(30)",
                path.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        assert!(
            write_or_checkpoint_elsewhere(&f).unwrap(),
            "held by the child"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !write_or_checkpoint_elsewhere(&f).unwrap(),
            "released at its exit"
        );
    }
}

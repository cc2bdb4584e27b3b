//! The FFI boundary: the only `unsafe` code of the crate.
//!
//! - `sqlite3_litestream_init`: the extension entry point (`.load ./liblitestream`).
//! - [`vfs_shim`]: the `litestream` VFS and its io methods, trampolines into [`crate::vfs`].
//! - [`sql_shim`]: the control database behind `PRAGMA litestream.*`, and the SQL functions.
//! - [`preload`]: the `sqlite3_open*` interposers used with `LD_PRELOAD`.
//! - [`process`]: signal forwarding for `litestream run`, stop signals for `replicate`.
//! - [`engine_host`]: the engine inside the `litestream` binary (`replicate` sidecar mode).
//! - `fork`: `pthread_atfork` handlers, so that a forked child inherits no locked mutex.
//!
//! Every `extern "C"` function catches panics ([`guard`]): no panic may unwind into SQLite.

pub mod engine_host;
mod fork;
pub mod osfile;
pub mod preload;
pub mod process;
mod replica_sql;
pub mod sql_shim;
pub mod sqlite_lib;
pub mod vfs_shim;

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

pub(crate) use crate::panic_guard::guard;

/// Log level of the extension when neither `logging.level` nor `LOG_LEVEL` sets one.
const DEFAULT_EXTENSION_LOG_LEVEL: &str = "warn";

/// Why the extension cannot be set up in this process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error(
        "this SQLite cannot serve the extension's API table ({0}); SQLite 3.40 or newer is needed"
    )]
    Api(String),
    #[error("SQLite has no default VFS to wrap")]
    NoDefaultVfs,
    #[error("cannot register the litestream VFS (SQLite error {0})")]
    RegisterVfs(c_int),
    #[error("cannot register the auto-extension (SQLite error {0})")]
    AutoExtension(c_int),
}

/// The signature SQLite calls an extension entry or an auto-extension with.
type ExtensionEntry = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *mut *mut c_char,
    *const ffi::sqlite3_api_routines,
) -> c_int;

/// `entry` as `sqlite3_auto_extension` declares its argument (a no-argument fn, as the C API
/// does; SQLite calls it with the entry's arguments).
fn as_auto_extension(entry: ExtensionEntry) -> unsafe extern "C" fn() {
    // SAFETY: both are plain C function pointers; SQLite calls it back as an `ExtensionEntry`.
    unsafe { std::mem::transmute::<ExtensionEntry, unsafe extern "C" fn()>(entry) }
}

/// Result of the one-time process setup: the VFS registration.
static SETUP: OnceLock<Result<(), SetupError>> = OnceLock::new();

/// The libsqlite3-sys API table is filled (by the entry point or the first auto-extension call).
static API_READY: AtomicBool = AtomicBool::new(false);

/// Fills the API table from `p_api` once; false if this SQLite is too old for the bindings.
///
/// # Safety
/// `p_api` must be the routine table SQLite passes to extensions.
unsafe fn init_api(p_api: *const ffi::sqlite3_api_routines) -> Result<(), SetupError> {
    if API_READY.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: per the contract; the function only reads the table.
    unsafe { ffi::rusqlite_extension_init2(p_api as *mut ffi::sqlite3_api_routines) }
        .map_err(|e| SetupError::Api(e.to_string()))?;
    API_READY.store(true, Ordering::Release);
    Ok(())
}

/// The exit-time flush of what is staged (see [`crate::uploader::flush_at_exit`]).
extern "C" fn flush_at_exit() {
    crate::uploader::flush_at_exit();
}

fn register_atexit() {
    // SAFETY: `flush_at_exit` is a plain `extern "C" fn()` that never unwinds and lives as long
    // as the process (the library is never unloaded: it is loaded with
    // SQLITE_OK_LOAD_PERMANENTLY/nodelete).
    let rc = unsafe { libc::atexit(flush_at_exit) };
    if rc != 0 {
        tracing::warn!("cannot register the exit-time flush");
    }
}

fn setup() -> Result<(), SetupError> {
    SETUP
        .get_or_init(|| {
            osfile::install_for_followers();
            // Inside someone else's process: quiet unless configured (`logging.level`,
            // `LOG_LEVEL`); warnings and errors always show.
            let mut logging = crate::config::global()
                .ok()
                .flatten()
                .map(|c| c.logging.clone())
                .unwrap_or_default();
            logging
                .level
                .get_or_insert_with(|| DEFAULT_EXTENSION_LOG_LEVEL.to_string());
            crate::logging::init(&logging);
            let config = crate::config::global().ok().flatten();
            crate::metrics::endpoint::start_configured(config, crate::status::metric_gauges);
            crate::monitor::start_if_configured(config);
            crate::heartbeat::start_if_configured(config);
            register_atexit();
            fork::register();
            vfs_shim::register(crate::config::vfs_default_on_load(config))?;
            // SAFETY: registers a function with the signature SQLite calls auto-extensions with.
            let rc = unsafe {
                ffi::sqlite3_auto_extension(Some(as_auto_extension(auto_extension_init)))
            };
            if rc != ffi::SQLITE_OK {
                return Err(SetupError::AutoExtension(rc));
            }
            Ok(())
        })
        .clone()
}

/// Writes `msg` into `*pz_err` with SQLite's allocator, as SQLite expects for error messages.
///
/// # Safety
/// `pz_err` must be null or valid for a write of one pointer.
unsafe fn set_error(pz_err: *mut *mut c_char, msg: &str) {
    if pz_err.is_null() {
        return;
    }
    let bytes = msg.as_bytes();
    // SAFETY: sqlite3_malloc64 returns null or a block of the requested size.
    let p = unsafe { ffi::sqlite3_malloc64(bytes.len() as u64 + 1) } as *mut u8;
    if p.is_null() {
        return;
    }
    // SAFETY: `p` holds `len + 1` bytes; `pz_err` is valid per the contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        *p.add(bytes.len()) = 0;
        *pz_err = p as *mut c_char;
    }
}

/// The extension entry point, found by SQLite from the file name `liblitestream`.
///
/// # Safety
/// Called by SQLite's extension loader with a valid API routine table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_litestream_init(
    db: *mut ffi::sqlite3,
    pz_err: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        // SAFETY: `p_api` is the routine table SQLite passes to every extension.
        if let Err(e) = unsafe { init_api(p_api) } {
            // SAFETY: pz_err comes from SQLite's loader.
            unsafe { set_error(pz_err, &format!("litestream: {e}")) };
            return ffi::SQLITE_ERROR;
        }
        if let Err(e) = crate::config::global() {
            // SAFETY: as above.
            unsafe { set_error(pz_err, &format!("litestream: {e}")) };
            return ffi::SQLITE_ERROR;
        }
        match setup().and_then(|()| {
            vfs_shim::register(crate::config::vfs_default_on_load(
                crate::config::global().ok().flatten(),
            ))
        }) {
            // The library stays mapped: the VFS and the auto-extension point into it.
            Ok(()) => {
                // The loading connection gets the functions too (the auto-extension only runs
                // for connections opened later).
                // SAFETY: `db` is the connection loading us.
                unsafe { sql_shim::register_functions(db) };
                ffi::SQLITE_OK_LOAD_PERMANENTLY
            }
            Err(e) => {
                // SAFETY: as above.
                unsafe { set_error(pz_err, &format!("litestream: {e}")) };
                ffi::SQLITE_ERROR
            }
        }
    })
}

/// How long a new connection waits for other connections while it switches the database to
/// WAL mode and attaches the control database. The application cannot have set a busy
/// timeout yet (SQLite runs auto-extensions inside `sqlite3_open*`), so without one, a
/// connection opened while another one is switching the new database, or writing it in
/// rollback mode, would fail at once with SQLITE_BUSY. Both wait only for other connections'
/// transactions; 5 s is the default busy timeout of Python's sqlite3 module.
const OPEN_BUSY_TIMEOUT_MS: c_int = 5_000;

/// Switches a replicated database to WAL mode (as Litestream does) and binds the connection
/// to the control database. Neither may fail the application's open: a database that stays
/// in rollback mode is logged and gets a full image once it is in WAL mode (docs/capture.md).
///
/// # Safety
/// `db` must be a connection being opened (called from the auto-extension).
unsafe fn switch_to_wal_and_bind(db: *mut ffi::sqlite3) {
    // SAFETY: `db` is valid; the application has no busy handler yet (see the constant).
    unsafe { ffi::sqlite3_busy_timeout(db, OPEN_BUSY_TIMEOUT_MS) };
    let sql = c"PRAGMA journal_mode=WAL";
    // SAFETY: `db` is a valid connection and `sql` a NUL-terminated string.
    let rc = unsafe {
        ffi::sqlite3_exec(
            db,
            sql.as_ptr(),
            None,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc != ffi::SQLITE_OK {
        // SAFETY: `db` is valid; errmsg returns a NUL-terminated string owned by SQLite.
        let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
            .to_string_lossy()
            .into_owned();
        tracing::warn!(error = %msg, "cannot switch the database to WAL mode; it is not replicated until it is");
    }
    // SAFETY: `db` is the connection being opened.
    unsafe { sql_shim::bind_connection(db) };
    // SAFETY: `db` is valid; 0 removes the handler, the state a new connection starts in.
    unsafe { ffi::sqlite3_busy_timeout(db, 0) };
    // `sqlite3_open*` fails when the connection's last error code is set after the
    // auto-extensions ran. Executing an empty statement resets it to SQLITE_OK.
    // SAFETY: `db` is valid and the string NUL-terminated.
    unsafe {
        ffi::sqlite3_exec(
            db,
            c"".as_ptr(),
            None,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

/// Runs for every connection opened after the extension loaded (or, preloaded, for every
/// connection): a database replicated by us is switched to WAL mode (as Litestream does) and
/// gets the control database; every connection gets the SQL functions.
unsafe extern "C" fn auto_extension_init(
    db: *mut ffi::sqlite3,
    _pz_err: *mut *mut c_char,
    p_api: *const ffi::sqlite3_api_routines,
) -> c_int {
    guard(ffi::SQLITE_OK, || {
        // SAFETY: SQLite passes its routine table to auto-extensions.
        if let Err(e) = unsafe { init_api(p_api) } {
            preload::api_failed(&e);
            return ffi::SQLITE_OK;
        }
        // SAFETY: `db` is the connection SQLite is opening; the file pointer it returns is
        // valid while the connection is open.
        let managed = unsafe { vfs_shim::main_is_managed(db) };
        // Test mode replicates what the application puts in WAL mode; it changes nothing.
        if managed && !crate::replicate_all::enabled() {
            // SAFETY: `db` is the connection being opened.
            unsafe { switch_to_wal_and_bind(db) };
        }
        // SAFETY: as above.
        unsafe { sql_shim::register_functions(db) };
        // SAFETY: as above.
        unsafe { replica_sql::on_connection(db) };
        ffi::SQLITE_OK
    })
}

//! `LD_PRELOAD=liblitestream.so app`: the library exports `sqlite3_open`, `sqlite3_open_v2` and
//! `sqlite3_open16` (see `ext/exports.map`). A preloaded library comes first in the global symbol
//! scope, so the app's calls, and those of a `_sqlite3` module that Python `dlopen`s later, land
//! here. The first call finds SQLite's real functions, sets the extension up (the `litestream`
//! VFS becomes the process default), then every call forwards to the real function.
//!
//! Nothing happens at load time (no constructor): SQLite may not be loaded yet (Python), and
//! initialising it before `main` breaks apps that call `sqlite3_config` first. Only the open
//! functions are interposed: libsqlite3 calls its own exports (e.g. `sqlite3_initialize`)
//! through the PLT, so interposing anything it calls internally would recurse.
//!
//! Interposers act only when this library really is preloaded (its file is named in
//! `LD_PRELOAD`); loaded with `.load`, they merely forward.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

use super::guard;

type OpenV2Fn =
    unsafe extern "C" fn(*const c_char, *mut *mut ffi::sqlite3, c_int, *const c_char) -> c_int;
type OpenFn = unsafe extern "C" fn(*const c_char, *mut *mut ffi::sqlite3) -> c_int;
type Open16Fn = unsafe extern "C" fn(*const c_void, *mut *mut ffi::sqlite3) -> c_int;
type AutoExtensionFn = unsafe extern "C" fn(Option<unsafe extern "C" fn()>) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut ffi::sqlite3) -> c_int;

/// SQLite's own functions, found once.
struct Real {
    open_v2: OpenV2Fn,
    open: OpenFn,
    /// Absent from builds with SQLITE_OMIT_UTF16.
    open16: Option<Open16Fn>,
    auto_extension: AutoExtensionFn,
    close: CloseFn,
}

static REAL: OnceLock<Option<Real>> = OnceLock::new();
/// Whether the extension is active in this process (set up once, by the first open).
static ACTIVE: OnceLock<bool> = OnceLock::new();

thread_local! {
    /// This thread is setting the extension up: opens it makes meanwhile just forward.
    static IN_SETUP: Cell<bool> = const { Cell::new(false) };
}

/// The soname apps link; the fallback when the real functions are not next in the global scope
/// (Python loads libsqlite3 with RTLD_LOCAL as a dependency of its `_sqlite3` module).
const LIBSQLITE3: &CStr = c"libsqlite3.so.0";

/// Finds SQLite's `name`, skipping our own definition.
fn lookup(name: &CStr, ours: *const c_void) -> *mut c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only reads the loader's tables.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if !p.is_null() && !std::ptr::eq(p, ours) {
        return p;
    }
    // SAFETY: RTLD_NOLOAD only returns a handle to an already loaded library (one reference,
    // kept for the life of the process); dlsym as above.
    unsafe {
        let h = libc::dlopen(LIBSQLITE3.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW);
        if h.is_null() {
            return ptr::null_mut();
        }
        let p = libc::dlsym(h, name.as_ptr());
        if std::ptr::eq(p, ours) {
            ptr::null_mut()
        } else {
            p
        }
    }
}

fn resolve() -> Option<Real> {
    let open_v2 = lookup(c"sqlite3_open_v2", preload_open_v2 as *const c_void);
    let open = lookup(c"sqlite3_open", preload_open as *const c_void);
    let open16 = lookup(c"sqlite3_open16", preload_open16 as *const c_void);
    let auto_extension = lookup(c"sqlite3_auto_extension", ptr::null());
    let close = lookup(c"sqlite3_close", ptr::null());
    if [open_v2, open, auto_extension, close]
        .iter()
        .any(|p| p.is_null())
    {
        return None;
    }
    // SAFETY: each symbol is SQLite's exported function of that name, which has exactly the
    // C signature given by the corresponding type (sqlite3.h).
    unsafe {
        Some(Real {
            open_v2: std::mem::transmute::<*mut c_void, OpenV2Fn>(open_v2),
            open: std::mem::transmute::<*mut c_void, OpenFn>(open),
            open16: (!open16.is_null())
                .then(|| std::mem::transmute::<*mut c_void, Open16Fn>(open16)),
            auto_extension: std::mem::transmute::<*mut c_void, AutoExtensionFn>(auto_extension),
            close: std::mem::transmute::<*mut c_void, CloseFn>(close),
        })
    }
}

/// The file name of this library, as the loader knows it.
fn own_file_name() -> Option<String> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr fills `info` for an address inside a loaded object (our function).
    let rc = unsafe { libc::dladdr(preload_open_v2 as *const c_void, info.as_mut_ptr()) };
    // SAFETY: on success `info` is initialised; dli_fname is null or NUL-terminated.
    let info = unsafe { info.assume_init() };
    if rc == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: as above.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    Some(name)
}

/// True when `LD_PRELOAD` (`:`- or space-separated) names a file with the same name as ours.
pub fn named_in_preload(preload: &str, own: &str) -> bool {
    let base = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    let own = base(own);
    own.is_some()
        && preload
            .split([':', ' '])
            .filter(|p| !p.is_empty())
            .any(|p| base(p) == own)
}

fn preloaded() -> bool {
    let Some(preload) = std::env::var_os("LD_PRELOAD") else {
        return false;
    };
    own_file_name().is_some_and(|own| named_in_preload(&preload.to_string_lossy(), &own))
}

/// The first open in a preloaded process: set the extension up.
fn activate(real: &Real) -> bool {
    if !preloaded() {
        return false;
    }
    // Without a configuration there is nothing to do; a broken one is reported, not fatal.
    match crate::config::global() {
        Ok(_) => {}
        Err(e) => {
            crate::logging::init_from_env();
            tracing::error!(error = %e, "litestream (LD_PRELOAD): bad configuration; nothing is replicated in this process");
            return false;
        }
    }
    // The API table arrives with the first auto-extension call: register ours with SQLite's
    // real function and open a throwaway in-memory connection to trigger it.
    // SAFETY: `auto_extension_init` has the signature SQLite calls auto-extensions with;
    // sqlite3_auto_extension declares it as a no-argument fn, as the C API does.
    let rc = unsafe {
        (real.auto_extension)(Some(std::mem::transmute::<
            unsafe extern "C" fn(
                *mut ffi::sqlite3,
                *mut *mut c_char,
                *const ffi::sqlite3_api_routines,
            ) -> c_int,
            unsafe extern "C" fn(),
        >(super::auto_extension_init)))
    };
    if rc != ffi::SQLITE_OK {
        return false;
    }
    let mut db: *mut ffi::sqlite3 = ptr::null_mut();
    // SAFETY: the real sqlite3_open_v2 with a valid name and out pointer; closed right after.
    unsafe {
        (real.open_v2)(
            c":memory:".as_ptr(),
            &mut db,
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
            ptr::null(),
        );
        (real.close)(db);
    }
    if !super::API_READY.load(std::sync::atomic::Ordering::Acquire) {
        return false;
    }
    match super::setup().and_then(|()| super::vfs_shim::register(true)) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "litestream (LD_PRELOAD): setup failed; nothing is replicated in this process");
            false
        }
    }
}

/// The real functions, after making sure the extension is set up.
fn ensure() -> Option<&'static Real> {
    let real = REAL.get_or_init(resolve).as_ref()?;
    if !IN_SETUP.with(Cell::get) {
        ACTIVE.get_or_init(|| {
            IN_SETUP.with(|f| f.set(true));
            let on = guard(false, || activate(real));
            IN_SETUP.with(|f| f.set(false));
            on
        });
    }
    Some(real)
}

/// The API table could not be set from SQLite (too old for the bindings): logged once.
pub(super) fn api_failed(e: &super::SetupError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::logging::init_from_env();
        tracing::error!(error = %e, "litestream: cannot use this SQLite; nothing is replicated in this process");
    });
}

/// # Safety
/// `pp_db` must be null or valid for one pointer write (the open functions' `ppDb`).
unsafe fn no_sqlite(pp_db: *mut *mut ffi::sqlite3) -> c_int {
    crate::logging::init_from_env();
    tracing::error!("litestream (LD_PRELOAD): cannot find SQLite's open functions");
    if !pp_db.is_null() {
        // SAFETY: per the contract (SQLite's: *ppDb is always written).
        unsafe { *pp_db = ptr::null_mut() };
    }
    ffi::SQLITE_CANTOPEN
}

/// `sqlite3_open_v2`, interposed.
///
/// # Safety
/// Same contract as SQLite's `sqlite3_open_v2`.
#[export_name = "sqlite3_open_v2"]
pub unsafe extern "C" fn preload_open_v2(
    filename: *const c_char,
    pp_db: *mut *mut ffi::sqlite3,
    flags: c_int,
    z_vfs: *const c_char,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || match ensure() {
        // SAFETY: forwarding the caller's arguments to SQLite's function.
        Some(real) => unsafe { (real.open_v2)(filename, pp_db, flags, z_vfs) },
        // SAFETY: `pp_db` is the caller's ppDb.
        None => unsafe { no_sqlite(pp_db) },
    })
}

/// `sqlite3_open`, interposed.
///
/// # Safety
/// Same contract as SQLite's `sqlite3_open`.
#[export_name = "sqlite3_open"]
pub unsafe extern "C" fn preload_open(
    filename: *const c_char,
    pp_db: *mut *mut ffi::sqlite3,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || match ensure() {
        // SAFETY: forwarding the caller's arguments to SQLite's function.
        Some(real) => unsafe { (real.open)(filename, pp_db) },
        // SAFETY: `pp_db` is the caller's ppDb.
        None => unsafe { no_sqlite(pp_db) },
    })
}

/// `sqlite3_open16`, interposed.
///
/// # Safety
/// Same contract as SQLite's `sqlite3_open16`.
#[export_name = "sqlite3_open16"]
pub unsafe extern "C" fn preload_open16(
    filename: *const c_void,
    pp_db: *mut *mut ffi::sqlite3,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        match ensure().and_then(|r| r.open16) {
            // SAFETY: forwarding the caller's arguments to SQLite's function.
            Some(open16) => unsafe { open16(filename, pp_db) },
            // SAFETY: `pp_db` is the caller's ppDb.
            None => unsafe { no_sqlite(pp_db) },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_list_matching() {
        let own = "/opt/lib/liblitestream.so";
        assert!(named_in_preload("/x/liblitestream.so", own));
        assert!(named_in_preload("libfoo.so:/y/liblitestream.so", own));
        assert!(named_in_preload("libfoo.so liblitestream.so", own));
        assert!(!named_in_preload("", own));
        assert!(!named_in_preload("/x/liblitestream.so.bak", own));
        assert!(!named_in_preload("/x/libother.so", own));
        assert!(!named_in_preload("/x/liblitestream.so", ""));
    }
}

//! `pthread_atfork` handlers: a child forked while another thread of the parent was inside
//! SQLite (or logging) must not inherit a locked mutex, or its first use of it waits forever.
//!
//! Before the fork, the forking thread takes, in a fixed order, the locks a child may need:
//! the fork record of [`crate::registry`] (which also notes the managed databases open at
//! this moment, see [`crate::registry::note_fork`]), SQLite's static mutexes, outermost first
//! as SQLite nests them (the application and VFS ones, `OPEN`, `VFS1`, `PRNG`, `MAIN`, `LRU`,
//! `PMEM`, `MEM`), and last the stderr lock the log lines are written under (a thread inside
//! SQLite may log from our VFS while holding a static mutex; a thread logging never waits for
//! SQLite). After the fork, parent and child each release them in the reverse order. Waiting
//! for them delays a fork only while another thread is inside one of those short sections.
//!
//! This does not make SQLite's per-process lock bookkeeping (the unix VFS's inode and
//! shared-memory records) true in the child: a child still must not open a database its
//! parent has open, and the VFS refuses a managed one with a clear error (see
//! [`crate::vfs::classify`]).

use std::cell::RefCell;

use libsqlite3_sys as ffi;

/// SQLite's static mutexes in the order they are taken before a fork: where SQLite holds one
/// while taking another, the outer one comes first (`OPEN` → `VFS1`, as a shared-cache open
/// calls the VFS; `VFS1` → `PRNG`, as the temp-file name is random; `PRNG` → `MAIN`, as the
/// generator finds the default VFS; `LRU` → `PMEM`; everything → `MEM`, the allocator's).
/// The application and VFS mutexes are taken first: their users call into SQLite while
/// holding them, not the other way round.
const SQLITE_STATIC_MUTEXES: [i32; 12] = [
    ffi::SQLITE_MUTEX_STATIC_APP1,
    ffi::SQLITE_MUTEX_STATIC_APP2,
    ffi::SQLITE_MUTEX_STATIC_APP3,
    ffi::SQLITE_MUTEX_STATIC_VFS2,
    ffi::SQLITE_MUTEX_STATIC_VFS3,
    ffi::SQLITE_MUTEX_STATIC_OPEN,
    ffi::SQLITE_MUTEX_STATIC_VFS1,
    ffi::SQLITE_MUTEX_STATIC_PRNG,
    ffi::SQLITE_MUTEX_STATIC_MAIN,
    ffi::SQLITE_MUTEX_STATIC_LRU,
    ffi::SQLITE_MUTEX_STATIC_PMEM,
    ffi::SQLITE_MUTEX_STATIC_MEM,
];

/// What the forking thread holds between the prepare handler and the parent or child one.
struct Held {
    fork_record: crate::registry::ForkRecordGuard,
    stderr: std::io::StderrLock<'static>,
    /// The SQLite mutexes entered, in the order they were entered (null ones are skipped).
    sqlite: Vec<usize>,
}

thread_local! {
    /// Set by the prepare handler, taken by the parent or child handler: all three run on
    /// the thread that calls `fork()` (and, in the child, on its copy).
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Registers the handlers once per process. Failure is logged: forks then behave as without
/// the extension.
pub(crate) fn register() {
    // SAFETY: the three handlers are `extern "C" fn()` that never unwind (each catches
    // panics), and they live as long as the process: the library is never unloaded (it is
    // loaded with SQLITE_OK_LOAD_PERMANENTLY/nodelete).
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(after), Some(after)) };
    if rc != 0 {
        tracing::warn!(
            rc,
            "cannot register the fork handlers: a child forked while another thread is inside \
             SQLite may hang"
        );
    }
}

extern "C" fn prepare() {
    super::guard((), || {
        let fork_record = crate::registry::note_fork();
        let mut sqlite = Vec::with_capacity(SQLITE_STATIC_MUTEXES.len());
        for id in SQLITE_STATIC_MUTEXES {
            // SAFETY: a static mutex id of this SQLite version; SQLite returns a pointer to
            // its static mutex (or null when built without threads). The API table is filled:
            // the handlers are registered by the setup that fills it.
            let m = unsafe { ffi::sqlite3_mutex_alloc(id) };
            if !m.is_null() {
                // SAFETY: a live static mutex, not held by this thread (fork is not called
                // from inside SQLite).
                unsafe { ffi::sqlite3_mutex_enter(m) };
                sqlite.push(m as usize);
            }
        }
        let stderr = std::io::stderr().lock();
        HELD.with(|h| {
            *h.borrow_mut() = Some(Held {
                fork_record,
                stderr,
                sqlite,
            })
        });
    })
}

/// The parent and the child handler: releases what [`prepare`] took, in the reverse order.
extern "C" fn after() {
    super::guard((), || {
        let Some(held) = HELD.with(|h| h.borrow_mut().take()) else {
            return;
        };
        drop(held.stderr);
        for &m in held.sqlite.iter().rev() {
            // SAFETY: entered by this thread (or, in the child, by the thread it copies) in
            // `prepare`; left once here.
            unsafe { ffi::sqlite3_mutex_leave(m as *mut ffi::sqlite3_mutex) };
        }
        drop(held.fork_record);
    })
}

//! Signal forwarding for `litestream run`: the signals a supervisor or terminal sends to stop
//! or poke a program (see [`FORWARDED`]) are passed on to the child the launcher started. The handler only touches atomics and calls `kill(2)`, both
//! async-signal-safe. Handlers are reset to the default in the child by `exec`.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals `litestream run` forwards: termination requests (a closed terminal's SIGHUP
/// included, whose default would kill the launcher alone and orphan the child) and the user
/// signals programs use for reloads. Job-control and fatal signals are not forwarded.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Pid of the child to forward to; 0 while it is not started yet.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the child existed.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; `pid` is our child.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Installs the forwarding handler for [`FORWARDED`]; call before starting the child.
pub fn install_forwarding() -> io::Result<()> {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value to fill in.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: `act.sa_mask` is a valid sigset to initialise.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: installs a handler that only uses async-signal-safe operations.
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// From now on, forwarded signals go to `pid`; one that arrived earlier is delivered now.
pub fn forward_to(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, pending) };
    }
}

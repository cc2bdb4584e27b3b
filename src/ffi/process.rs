//! Signal forwarding for `litestream run`, and the stop signals of `litestream replicate` in
//! sidecar mode ([`block_stop_signals`], [`wait_stop_signal`]). For `run`, the signals a supervisor or terminal sends to stop
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

/// The signals that stop `litestream replicate` in sidecar mode (a final sync, then exit 0).
pub const STOP: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

fn stop_set() -> libc::sigset_t {
    // SAFETY: a zeroed sigset is valid storage for sigemptyset to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid; sigaddset only writes it.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in STOP {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

/// Blocks [`STOP`] in the calling thread and in every thread it starts afterwards, so that
/// [`wait_stop_signal`] receives them. Call before any other thread starts.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is an initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits until one of [`STOP`] (blocked by [`block_stop_signals`]) is sent to the process.
pub fn wait_stop_signal() -> io::Result<libc::c_int> {
    let set = stop_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` a valid out pointer.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

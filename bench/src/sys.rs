//! The few libc calls the driver needs: a system-wide monotonic clock (comparable between the
//! driver and its children), inotify, `wait4` for a child's peak RSS, and signals.
//! Every `unsafe` block of the bench lives here.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// CLOCK_MONOTONIC in nanoseconds. The same clock in every process of the machine, so commit
/// times taken by a writer child and arrival times taken by the driver can be subtracted.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system, seconds) used so far by every thread of this process, including
/// the extension's uploader thread. On a shared machine this is steadier than throughput.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer; RUSAGE_SELF needs nothing else.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time (user + system, seconds) used so far by the calling thread alone: the
/// application's own thread, without the extension's background threads.
pub fn thread_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer; RUSAGE_THREAD needs nothing else.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// How a child ended and its peak resident set size.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// `ru_maxrss` of the child (KiB).
    pub maxrss_kib: u64,
}

/// Waits for child `pid` with `wait4`, returning its status and `ru_maxrss`.
/// The caller must not also reap it through `std::process::Child::wait`.
pub fn wait4(pid: u32) -> io::Result<Exit> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid out-pointers; `pid` is our own child.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc == pid as libc::pid_t {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    Ok(Exit {
        code,
        signal,
        maxrss_kib: usage.ru_maxrss as u64,
    })
}

/// Sends `sig` to process `pid` (one of our children).
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) with a pid we started; no memory is passed.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// An inotify instance (non-blocking descriptor, read with a poll timeout).
pub struct Inotify {
    fd: libc::c_int,
}

/// One inotify event: watch descriptor, mask, and the name inside the watched directory.
pub struct Event {
    pub wd: i32,
    pub mask: u32,
    pub name: String,
}

pub const IN_CLOSE_WRITE: u32 = libc::IN_CLOSE_WRITE;
pub const IN_MOVED_TO: u32 = libc::IN_MOVED_TO;
pub const IN_MOVED_FROM: u32 = libc::IN_MOVED_FROM;
pub const IN_DELETE: u32 = libc::IN_DELETE;

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: plain syscall with flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inotify { fd })
    }

    pub fn add_watch(&self, dir: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call; `fd` is ours.
        let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Waits up to `timeout` for events and returns those available (possibly none).
    pub fn read(&self, timeout: Duration) -> io::Result<Vec<Event>> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(err)
            };
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for `buf.len()` bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock
                    || err.kind() == io::ErrorKind::Interrupted
                {
                    return Ok(out);
                }
                return Err(err);
            }
            if n == 0 {
                return Ok(out);
            }
            parse_events(&buf[..n as usize], &mut out);
        }
    }
}

/// Parses the kernel's `struct inotify_event` records (wd i32, mask u32, cookie u32, len u32,
/// name padded with NULs to `len`), native endian.
fn parse_events(mut b: &[u8], out: &mut Vec<Event>) {
    const HEAD: usize = 16;
    while b.len() >= HEAD {
        let wd = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let mask = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let end = (HEAD + len).min(b.len());
        let raw = &b[HEAD..end];
        let name_len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        out.push(Event {
            wd,
            mask,
            name: String::from_utf8_lossy(&raw[..name_len]).into_owned(),
        });
        b = &b[end..];
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

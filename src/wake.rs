//! Wakes the process that stages a database (the stager, [`crate::stager`]) when another
//! process of the machine committed to it (design: `docs/staging.md`, "Several processes").
//!
//! The stager listens on a datagram socket named after its meta directory; every other process
//! sends it one byte per commit (one non-blocking `sendto`, nothing else: no reply, no lock).
//! The datagram carries no data the stager trusts: on receipt, the stager reads SQLite's
//! committed mark from the shared wal-index itself. While nobody commits, the listening thread
//! sleeps in `recv`: no timer, no polling.
//!
//! The socket is in Linux's abstract namespace (`\0liblitestream-wake-<dev>-<inode>` of the meta
//! directory): nothing to clean up after a `kill -9`, and no length limit from the meta
//! directory's path. Processes in different network namespaces cannot reach each other's
//! socket; there, a non-stager's commits wait for the stager's own next commit, as without it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::staging::{MetaDir, StagingError};

/// What a wake asks of the stager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A transaction was committed: capture up to SQLite's mark and ship it at the next sync.
    Committed,
    /// A process waits for the replica (`PRAGMA litestream.checkpoint`): capture and ship now.
    FlushNow,
}

impl Wake {
    fn byte(self) -> u8 {
        match self {
            Wake::Committed => b'c',
            Wake::FlushNow => b'f',
        }
    }

    /// Any other byte (or an empty datagram) is taken as a commit: waking costs one capture.
    fn from_byte(b: Option<u8>) -> Wake {
        match b {
            Some(b'f') => Wake::FlushNow,
            _ => Wake::Committed,
        }
    }
}

/// The socket address of the stager of the database whose meta directory is `meta`.
fn address(meta: &MetaDir) -> Result<SocketAddr, StagingError> {
    let io_err = |source| StagingError::Io {
        path: meta.root.clone(),
        source,
    };
    let m = std::fs::metadata(&meta.root).map_err(io_err)?;
    let name = format!("liblitestream-wake-{:x}-{:x}", m.dev(), m.ino());
    SocketAddr::from_abstract_name(name.as_bytes()).map_err(io_err)
}

/// The stager's end: a thread that calls `on_wake` for every batch of wakes received. Dropping
/// it stops the thread (it is not joined: it may be waiting for a lock the dropper holds).
#[derive(Debug)]
pub struct Listener {
    socket: UnixDatagram,
    stop: Arc<AtomicBool>,
    pid: u32,
}

impl Listener {
    /// Binds the stager's socket for `meta` and starts its thread. Fails when another process
    /// already listens there (e.g. a child forked by a previous stager that outlived it).
    pub fn start(
        meta: &MetaDir,
        mut on_wake: impl FnMut(Wake) + Send + 'static,
    ) -> Result<Listener, StagingError> {
        let addr = address(meta)?;
        let io_err = |source| StagingError::Io {
            path: meta.root.clone(),
            source,
        };
        let socket = UnixDatagram::bind_addr(&addr).map_err(io_err)?;
        let theirs = socket.try_clone().map_err(io_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("litestream-wake".into())
            .spawn(move || {
                crate::panic_guard::supervise("litestream-wake", || {
                    match receive(&theirs, &stopped) {
                        Some(wake) => {
                            on_wake(wake);
                            std::ops::ControlFlow::Continue(())
                        }
                        None => std::ops::ControlFlow::Break(()),
                    }
                })
            })
            .map_err(io_err)?;
        Ok(Listener {
            socket,
            stop,
            pid: std::process::id(),
        })
    }
}

/// Waits for a wake, then takes every other one already queued (one capture serves them all):
/// `FlushNow` if any asked for it. `None` once the listener is dropped.
fn receive(socket: &UnixDatagram, stop: &AtomicBool) -> Option<Wake> {
    let mut buf = [0u8; 1];
    let first = loop {
        match socket.recv(&mut buf) {
            Ok(n) => break Wake::from_byte(buf[..n].first().copied()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    if stop.load(Ordering::Acquire) {
        return None;
    }
    let mut wake = first;
    if socket.set_nonblocking(true).is_ok() {
        while let Ok(n) = socket.recv(&mut buf) {
            if Wake::from_byte(buf[..n].first().copied()) == Wake::FlushNow {
                wake = Wake::FlushNow;
            }
        }
        let _ = socket.set_nonblocking(false);
    }
    Some(wake)
}

impl Drop for Listener {
    fn drop(&mut self) {
        // In a forked child the socket is the parent's too: shutting it down would stop the
        // parent's listener. The child only closes its descriptor.
        if self.pid == std::process::id() {
            self.stop.store(true, Ordering::Release);
            // Wakes the thread's `recv` (it returns 0 bytes, then sees `stop`).
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A non-stager's end: one unbound socket, opened at the first wake.
#[derive(Debug, Default)]
pub struct Sender {
    socket: OnceLock<Option<(UnixDatagram, SocketAddr)>>,
}

impl Sender {
    /// Wakes the stager of `meta`; true when a process listens there. Never blocks: a full
    /// queue means the stager has wakes to process already.
    pub fn send(&self, meta: &MetaDir, wake: Wake) -> bool {
        let socket = self.socket.get_or_init(|| {
            let addr = address(meta).ok()?;
            let s = UnixDatagram::unbound().ok()?;
            s.set_nonblocking(true).ok()?;
            Some((s, addr))
        });
        let Some((s, addr)) = socket else {
            return false;
        };
        match s.send_to_addr(&[wake.byte()], addr) {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn meta() -> (tempfile::TempDir, MetaDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir {
            root: dir.path().to_path_buf(),
        };
        (dir, meta)
    }

    #[test]
    fn a_wake_reaches_the_listener_and_a_dropped_listener_stops_listening() {
        let (_dir, meta) = meta();
        let sender = Sender::default();
        assert!(!sender.send(&meta, Wake::Committed), "nobody listens yet");
        let (tx, rx) = crossbeam_channel::unbounded();
        let listener = Listener::start(&meta, move |w| tx.send(w).unwrap()).unwrap();
        assert!(sender.send(&meta, Wake::FlushNow));
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, Wake::FlushNow);
        // A second stager of the same directory cannot listen at the same time.
        assert!(Listener::start(&meta, |_| {}).is_err());
        drop(listener);
        // The thread exits and closes its descriptor; then the name is free again.
        let mut again = None;
        for _ in 0..1000 {
            if let Ok(l) = Listener::start(&meta, |_| {}) {
                again = Some(l);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(again.is_some(), "the name was not released");
    }

    #[test]
    fn queued_wakes_are_taken_together_and_a_flush_wins() {
        let (a, b) = UnixDatagram::pair().unwrap();
        for w in [Wake::Committed, Wake::FlushNow, Wake::Committed] {
            a.send(&[w.byte()]).unwrap();
        }
        let stop = AtomicBool::new(false);
        assert_eq!(receive(&b, &stop), Some(Wake::FlushNow));
        a.send(&[Wake::Committed.byte()]).unwrap();
        assert_eq!(
            receive(&b, &stop),
            Some(Wake::Committed),
            "one batch per receive"
        );
        a.send(&[]).unwrap();
        stop.store(true, Ordering::Release);
        assert_eq!(receive(&b, &stop), None, "stopped");
    }
}

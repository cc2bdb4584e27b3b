//! Wakes the process that stages a database (the stager, [`crate::stager`]) when another
//! process of the machine committed to it (design: `docs/staging.md`, "Several processes").
//!
//! The stager listens on a datagram socket named after its meta directory; every other process
//! sends it one byte per commit (one non-blocking `sendto`, nothing else: no reply, no lock).
//! The datagram carries no data the stager trusts: on receipt, the stager reads SQLite's
//! committed mark from the shared wal-index itself. While nobody commits, the process's one wake
//! thread sleeps in `epoll_wait`: no timer, no polling.
//!
//! The socket is in Linux's abstract namespace (`\0liblitestream-wake-<dev>-<inode>` of the meta
//! directory): nothing to clean up after a `kill -9`, and no length limit from the meta
//! directory's path. Processes in different network namespaces cannot reach each other's
//! socket; there, a non-stager's commits wait for the stager's own next commit, as without it.

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use mio::net::UnixDatagram;
use parking_lot::Mutex;

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

/// The stager's end for one database: its socket, served by the process's one wake thread
/// ([`hub`]), which calls `on_wake` for every batch of wakes received. Dropping it stops that.
pub struct Listener {
    token: usize,
    entry: Arc<Entry>,
    pid: u32,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("token", &self.token)
            .finish()
    }
}

type OnWake = Box<dyn FnMut(Wake) + Send>;

/// One listening socket and what to call when it receives.
struct Entry {
    socket: UnixDatagram,
    stopped: AtomicBool,
    on_wake: Mutex<OnWake>,
}

/// The process's wake thread (`litestream-wake`): one epoll over every listening socket, so a
/// process that stages many databases has one thread, not one per database. The map's lock is
/// never held while a callback runs (a callback takes the database's locks, and a listener is
/// dropped under them).
struct Hub {
    registry: mio::Registry,
    entries: Mutex<HashMap<usize, Arc<Entry>>>,
    next: AtomicUsize,
}

fn hub() -> Option<&'static Hub> {
    static HUB: OnceLock<Option<Hub>> = OnceLock::new();
    HUB.get_or_init(|| {
        let poll = mio::Poll::new().ok()?;
        let registry = poll.registry().try_clone().ok()?;
        std::thread::Builder::new()
            .name("litestream-wake".into())
            .spawn(move || serve(poll))
            .ok()?;
        Some(Hub {
            registry,
            entries: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        })
    })
    .as_ref()
}

/// The wake thread: waits (no timeout) for a socket to become readable, then serves it.
fn serve(mut poll: mio::Poll) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_WAIT);
    crate::panic_guard::supervise("litestream-wake", || {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "the wake thread cannot wait for wakes; other processes' commits are shipped at this process's next commit");
                return ControlFlow::Break(());
            }
        }
        for ev in events.iter() {
            let entry = hub().and_then(|h| h.entries.lock().get(&ev.token().0).cloned());
            if let Some(entry) = entry {
                if let Some(wake) = receive(&entry.socket) {
                    if !entry.stopped.load(Ordering::Acquire) {
                        (entry.on_wake.lock())(wake);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
}

/// Events taken per wait: more than the databases a process usually stages at once; others
/// are taken at the next wait.
const EVENTS_PER_WAIT: usize = 64;

impl Listener {
    /// Binds the stager's socket for `meta` and has the wake thread serve it. Fails when
    /// another process already listens there (e.g. a child forked by a previous stager that
    /// outlived it).
    pub fn start(
        meta: &MetaDir,
        on_wake: impl FnMut(Wake) + Send + 'static,
    ) -> Result<Listener, StagingError> {
        let addr = address(meta)?;
        let io_err = |source| StagingError::Io {
            path: meta.root.clone(),
            source,
        };
        let hub = hub().ok_or_else(|| io_err(io::Error::other("no wake thread")))?;
        let std_socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).map_err(io_err)?;
        std_socket.set_nonblocking(true).map_err(io_err)?;
        let mut socket = UnixDatagram::from_std(std_socket);
        let token = hub.next.fetch_add(1, Ordering::Relaxed);
        hub.registry
            .register(&mut socket, mio::Token(token), mio::Interest::READABLE)
            .map_err(io_err)?;
        let entry = Arc::new(Entry {
            socket,
            stopped: AtomicBool::new(false),
            on_wake: Mutex::new(Box::new(on_wake)),
        });
        hub.entries.lock().insert(token, Arc::clone(&entry));
        Ok(Listener {
            token,
            entry,
            pid: std::process::id(),
        })
    }
}

/// Takes every wake queued on `socket` (one capture serves them all): `FlushNow` if any asked
/// for it; `None` when none was queued.
fn receive(socket: &UnixDatagram) -> Option<Wake> {
    let mut buf = [0u8; 1];
    let mut wake = None;
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let w = Wake::from_byte(buf[..n].first().copied());
                if wake != Some(Wake::FlushNow) {
                    wake = Some(w);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return wake,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // In a forked child the socket is the parent's too, and there is no wake thread: the
        // child leaves everything to the parent.
        if self.pid != std::process::id() {
            return;
        }
        self.entry.stopped.store(true, Ordering::Release);
        if let Some(h) = hub() {
            // The socket closes (and leaves the epoll set) with the last reference: here, or
            // after a callback in progress returns.
            h.entries.lock().remove(&self.token);
        }
    }
}

/// A non-stager's end: one unbound socket, opened at the first wake.
#[derive(Debug, Default)]
pub struct Sender {
    socket: OnceLock<Option<(std::os::unix::net::UnixDatagram, SocketAddr)>>,
}

impl Sender {
    /// Wakes the stager of `meta`; true when a process listens there. Never blocks: a full
    /// queue means the stager has wakes to process already.
    pub fn send(&self, meta: &MetaDir, wake: Wake) -> bool {
        let socket = self.socket.get_or_init(|| {
            let addr = address(meta).ok()?;
            let s = std::os::unix::net::UnixDatagram::unbound().ok()?;
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
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let b = UnixDatagram::from_std(b);
        assert_eq!(receive(&b), None, "nothing queued");
        for w in [Wake::Committed, Wake::FlushNow, Wake::Committed] {
            a.send(&[w.byte()]).unwrap();
        }
        assert_eq!(receive(&b), Some(Wake::FlushNow));
        a.send(&[Wake::Committed.byte()]).unwrap();
        assert_eq!(receive(&b), Some(Wake::Committed), "one batch per receive");
    }

    #[test]
    fn many_listeners_share_one_thread() {
        let dirs: Vec<_> = (0..20).map(|_| meta()).collect();
        let (tx, rx) = crossbeam_channel::unbounded();
        let listeners: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, (_, m))| {
                let tx = tx.clone();
                Listener::start(m, move |_| tx.send(i).unwrap()).unwrap()
            })
            .collect();
        let sender = Sender::default();
        let (_, last) = dirs.last().unwrap();
        assert!(sender.send(last, Wake::Committed));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 19);
        let threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "litestream-wake")
            })
            .count();
        assert_eq!(threads, 1, "one wake thread for every listener");
        drop(listeners);
    }
}

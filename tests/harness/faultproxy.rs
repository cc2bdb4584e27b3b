//! A fault-injecting HTTP proxy (std threads) to put in front of the S3 server.
//!
//! Every request gets its own upstream connection (`Connection: close` is forced both ways, so a
//! fault decision is per request). On a chosen fraction of requests one fault from the enabled
//! set is injected:
//! - [`Fault::ServerError`]: a `503 SlowDown` answer without reaching the store;
//! - [`Fault::Reset`]: the connection is reset (RST) after the request head;
//! - [`Fault::Stall`]: no answer for [`FaultConfig::stall`], then the connection is closed;
//! - [`Fault::Slow`]: forwarded, but the answer trickles back in small delayed chunks;
//! - [`Fault::CutResponse`]: forwarded, and the answer is cut off halfway.
//!
//! The configuration can be switched at runtime ([`FaultProxy::set`]); the proxy stops when
//! dropped. All traffic stays on 127.0.0.1.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ServerError,
    Reset,
    Stall,
    Slow,
    CutResponse,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ServerError,
        Fault::Reset,
        Fault::Stall,
        Fault::Slow,
        Fault::CutResponse,
    ];
}

#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Fraction of requests that get a fault, 0.0..=1.0.
    pub fraction: f64,
    /// Faults to choose from (uniformly).
    pub kinds: Vec<Fault>,
    /// How long a stalled request is held before the connection is closed.
    pub stall: Duration,
    /// Pause before each small chunk of a slow answer.
    pub slow_chunk_delay: Duration,
}

impl FaultConfig {
    /// No faults: a transparent proxy.
    pub fn none() -> FaultConfig {
        FaultConfig {
            fraction: 0.0,
            kinds: Vec::new(),
            stall: Duration::from_secs(2),
            slow_chunk_delay: Duration::from_millis(5),
        }
    }

    /// `fraction` of the requests get one of `kinds`.
    pub fn failing(fraction: f64, kinds: &[Fault]) -> FaultConfig {
        FaultConfig {
            fraction,
            kinds: kinds.to_vec(),
            ..FaultConfig::none()
        }
    }
}

/// Counters, for asserting that faults were really injected.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub faults: AtomicU64,
}

struct Shared {
    upstream: u16,
    config: Mutex<FaultConfig>,
    stats: Stats,
    /// Request lines seen (`PUT /bucket/key?query`), in arrival order.
    seen: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

/// Longest request or response head accepted (S3 heads are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
/// Bytes per chunk of a slow answer.
const SLOW_CHUNK: usize = 512;
/// Socket timeout of the proxy's own reads, so that no thread waits forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream` with `config`.
    pub fn start(upstream: u16, config: FaultConfig) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream,
            config: Mutex::new(config),
            stats: Stats::default(),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let _ = handle(&s, conn);
                });
            }
        });
        FaultProxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, config: FaultConfig) {
        *self.shared.config.lock().expect("config lock") = config;
    }

    pub fn requests(&self) -> u64 {
        self.shared.stats.requests.load(Ordering::Relaxed)
    }

    /// Every request line seen so far (`METHOD /path?query`), in arrival order, faulted or not.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.seen.lock().expect("seen lock").clone()
    }

    pub fn faults(&self) -> u64 {
        self.shared.stats.faults.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads up to and including `\r\n\r\n`; returns the head and any bytes read past it.
fn read_head(s: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("head too large"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn force_close(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 20);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn content_length(head: &str) -> Option<usize> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

fn choose(s: &Shared) -> (Option<Fault>, FaultConfig) {
    let cfg = s.config.lock().expect("config lock").clone();
    s.stats.requests.fetch_add(1, Ordering::Relaxed);
    if cfg.kinds.is_empty() || fastrand::f64() >= cfg.fraction {
        return (None, cfg);
    }
    s.stats.faults.fetch_add(1, Ordering::Relaxed);
    (Some(cfg.kinds[fastrand::usize(..cfg.kinds.len())]), cfg)
}

fn reset(conn: TcpStream) {
    // A zero linger turns close() into a TCP reset.
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

/// Reads the rest of a request body of `len` bytes of which `have` arrived with the head.
fn drain_body(conn: &mut TcpStream, len: usize, have: usize) -> io::Result<()> {
    let left = len.saturating_sub(have) as u64;
    io::copy(&mut Read::by_ref(conn).take(left), &mut io::sink())?;
    Ok(())
}

fn expects_continue(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("\r\nexpect: 100-continue")
}

fn handle(s: &Shared, mut conn: TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let (head, rest) = read_head(&mut conn)?;
    let line = head.lines().next().unwrap_or_default();
    let line = line.strip_suffix(" HTTP/1.1").unwrap_or(line).to_string();
    s.seen.lock().expect("seen lock").push(line);
    let (fault, cfg) = choose(s);
    match fault {
        Some(Fault::Reset) => {
            reset(conn);
            return Ok(());
        }
        Some(Fault::Stall) => {
            thread::sleep(cfg.stall);
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::ServerError) => {
            if !expects_continue(&head) {
                drain_body(&mut conn, content_length(&head).unwrap_or(0), rest.len())?;
            }
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
            write!(
                conn,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        _ => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", s.upstream))?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.write_all(force_close(&head).as_bytes())?;
    up.write_all(&rest)?;
    // Request body: the client sends it after the head; copy until the client stops sending
    // (it waits for our answer) or the upstream has answered and closed.
    let mut client_r = conn.try_clone()?;
    let mut up_w = up.try_clone()?;
    let body_len = content_length(&head)
        .unwrap_or(0)
        .saturating_sub(rest.len()) as u64;
    let pump = thread::spawn(move || {
        let _ = io::copy(&mut Read::by_ref(&mut client_r).take(body_len), &mut up_w);
    });
    let (mut resp_head, mut resp_rest) = read_head(&mut up)?;
    while resp_head.starts_with("HTTP/1.1 100") && resp_rest.is_empty() {
        // `Expect: 100-continue`: let the client send its body, then wait for the answer.
        conn.write_all(resp_head.as_bytes())?;
        (resp_head, resp_rest) = read_head(&mut up)?;
    }
    let _ = pump.join();
    let mut out = force_close(&resp_head).into_bytes();
    out.extend_from_slice(&resp_rest);
    let mut body = Vec::new();
    up.read_to_end(&mut body)?;
    out.extend_from_slice(&body);
    match fault {
        Some(Fault::CutResponse) => {
            let cut = out.len() / 2;
            conn.write_all(&out[..cut])?;
            reset(conn);
        }
        Some(Fault::Slow) => {
            for chunk in out.chunks(SLOW_CHUNK) {
                thread::sleep(cfg.slow_chunk_delay);
                conn.write_all(chunk)?;
            }
            let _ = conn.shutdown(Shutdown::Both);
        }
        _ => {
            conn.write_all(&out)?;
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
    Ok(())
}

/// Faults a fault test needs for its outcome to mean something.
pub const MIN_FAULTS: u64 = 5;

/// What [`write_through_faults`] saw.
pub struct FaultRun {
    /// Faults the proxy injected.
    pub injected: u64,
    /// The writer's log (it was closed).
    pub log: String,
}

/// The backends' fault test: writes through `w` (a table `t(id INTEGER PRIMARY KEY, v BLOB)`)
/// while `proxy` fails a third of the requests (resets, server errors, 2 s stalls): at least
/// 150 commits, and on until [`MIN_FAULTS`] faults have hit (the replicator makes only a few
/// requests per second, so 150 commits may meet few), at most 1500. Then the proxy heals, one
/// more row is committed, and `w` is closed. Every write must succeed ([`Session::exec`]
/// panics otherwise).
pub fn write_through_faults(mut w: crate::Session, proxy: &FaultProxy) -> FaultRun {
    let mut faults = FaultConfig::failing(1.0 / 3.0, &Fault::ALL);
    faults.stall = Duration::from_secs(2);
    proxy.set(faults);
    let mut i = 0;
    while i < 150 || (proxy.faults() < MIN_FAULTS && i < 1500) {
        w.exec(&format!(
            "INSERT INTO t(v) VALUES (randomblob({})); UPDATE t SET v = randomblob(200) WHERE id = {}",
            100 + (i * 397) % 6000,
            1 + i / 2
        ));
        i += 1;
        std::thread::sleep(Duration::from_millis(40));
    }
    let injected = proxy.faults();
    proxy.set(FaultConfig::none());
    w.exec("INSERT INTO t(v) VALUES ('after the faults')");
    let log = w.close();
    // Clients retry most faults themselves; the rest show up as "sync failed; will retry".
    eprintln!(
        "proxy: {injected} faults in {} requests; uploader retries: {}",
        proxy.requests(),
        log.matches("will retry").count()
    );
    FaultRun { injected, log }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_rewrite() {
        let h = "GET / HTTP/1.1\r\nHost: x\r\nconnection: keep-alive\r\nContent-Length: 12\r\n\r\n";
        let f = force_close(h);
        assert_eq!(
            f,
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(content_length(h), Some(12));
        assert_eq!(content_length("GET / HTTP/1.1\r\n\r\n"), None);
    }
}

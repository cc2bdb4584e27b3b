//! A tiny HTTP/1.x responder for `GET /metrics` on a `std::net` listener: an accepting thread
//! that serves each connection on its own short-lived thread (at most [`MAX_CONNECTIONS`] at
//! once), one request per connection, `Connection: close`. Enough for Prometheus scrapes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::GaugeSource;

/// A scraper sends its whole request at once: this bounds the whole request, not each read, so
/// a client trickling a byte at a time is dropped too.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once: a few scrapers plus some slow or hostile clients, which hold a
/// slot for at most [`REQUEST_READ_TIMEOUT`] + [`RESPONSE_WRITE_TIMEOUT`]. Beyond it, new
/// connections are closed at once rather than queued behind them.
const MAX_CONNECTIONS: usize = 16;
/// Writing the response may not stall the thread for longer than this either.
const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Request line plus headers of any scraper fit easily; larger requests are refused.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// `:9090` (Go's "every interface") becomes `0.0.0.0:9090`; anything else is used as is.
pub fn listen_addr(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// Binds `addr` and serves `/metrics` from a thread named `litestream-metrics`, with the gauges
/// of `gauges` at each scrape.
pub fn start(addr: &str, gauges: GaugeSource) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen_addr(addr))?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("litestream-metrics".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                            active.fetch_sub(1, Ordering::AcqRel);
                            tracing::debug!("metrics: too many connections; closing one");
                            continue;
                        }
                        let a = Arc::clone(&active);
                        let spawned = std::thread::Builder::new()
                            .name("litestream-metrics-conn".into())
                            .spawn(move || {
                                // A panic ends this request only; the next one is served as usual.
                                match crate::panic_guard::catch(|| serve_one(s, gauges)) {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => tracing::debug!(error = %e, "metrics: request failed"),
                                    Err(panic) => tracing::error!(thread = "litestream-metrics", panic = %panic, "metrics: a request panicked; serving the next one (please report)"),
                                }
                                a.fetch_sub(1, Ordering::AcqRel);
                            });
                        if spawned.is_err() {
                            active.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "metrics: accept failed"),
                }
            }
        })?;
    Ok(local)
}

/// Starts the endpoint once per process when the configuration sets `addr`. A failure (port in
/// use, e.g. by a second process of the same app) is logged, never fatal.
pub fn start_configured(config: Option<&crate::config::Config>, gauges: GaugeSource) {
    static STARTED: OnceLock<()> = OnceLock::new();
    let Some(addr) = config.and_then(|c| c.addr.clone()) else {
        return;
    };
    STARTED.get_or_init(|| match start(&addr, gauges) {
        Ok(local) => tracing::info!(addr = %local, "serving metrics at /metrics"),
        Err(e) => tracing::warn!(addr = %addr, error = %e, "cannot serve metrics (is another process using this address?); replication is not affected"),
    });
}

fn serve_one(mut s: TcpStream, gauges: GaugeSource) -> io::Result<()> {
    s.set_write_timeout(Some(RESPONSE_WRITE_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request took too long to arrive",
            ));
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST_BYTES {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, body) = respond(head.lines().next().unwrap_or(""), gauges);
    let is_head = head.starts_with("HEAD ");
    let content_type = if status == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out)?;
    s.flush()
}

/// Status and body for a request line such as `GET /metrics HTTP/1.1`.
fn respond(request_line: &str, gauges: GaugeSource) -> (u16, String) {
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return (400, "bad request\n".into());
    };
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, super::render(&gauges())),
        ("GET" | "HEAD", _) => (404, "not found; metrics are at /metrics\n".into()),
        _ => (405, "only GET /metrics is served\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_routes() {
        assert_eq!(listen_addr(":9090"), "0.0.0.0:9090");
        assert_eq!(listen_addr("127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(respond("GET /metrics HTTP/1.1", Vec::new).0, 200);
        assert_eq!(respond("GET /metrics?x=1 HTTP/1.0", Vec::new).0, 200);
        assert_eq!(respond("GET / HTTP/1.1", Vec::new).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", Vec::new).0, 405);
        assert_eq!(respond("", Vec::new).0, 400);
    }

    #[test]
    fn serves_a_real_get() {
        crate::metrics::record_request("http-test", "GET");
        let addr = start("127.0.0.1:0", Vec::new).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(
            resp.contains("Content-Type: text/plain; version=0.0.4"),
            "{resp}"
        );
        let body = resp.split("\r\n\r\n").nth(1).unwrap();
        let len: usize = resp
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        assert!(
            body.contains("litestream_replica_operation_total{replica_type=\"http-test\",operation=\"GET\"} 1"),
            "{body}"
        );
    }

    /// Sends one byte every 200 ms until the server closes the connection (true) or `bound`
    /// passes or `stop` is set (false).
    fn trickle(addr: SocketAddr, bound: Duration, stop: &std::sync::atomic::AtomicBool) -> bool {
        let mut s = TcpStream::connect(addr).unwrap();
        let end = Instant::now() + bound;
        while Instant::now() < end && !stop.load(Ordering::SeqCst) {
            if s.write_all(b"G").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    #[test]
    fn a_trickling_client_is_dropped_and_does_not_hold_up_scrapes() {
        use std::sync::atomic::AtomicBool;
        let addr = start("127.0.0.1:0", Vec::new).unwrap();
        let stop = AtomicBool::new(false);
        // Far beyond the request deadline: ending by this bound means it was never dropped.
        let bound = Duration::from_secs(60);
        std::thread::scope(|sc| {
            let slow = sc.spawn(|| trickle(addr, bound, &stop));
            let blocked = sc.spawn(|| trickle(addr, bound, &stop));
            // Meanwhile a scrape is answered (before, it waited behind the tricklers).
            std::thread::sleep(Duration::from_millis(300));
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut resp = String::new();
            c.read_to_string(&mut resp).unwrap();
            assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
            let answered_while_trickling = !slow.is_finished() || !blocked.is_finished();
            assert!(
                slow.join().unwrap() && blocked.join().unwrap(),
                "a trickling client was never dropped"
            );
            assert!(
                answered_while_trickling,
                "the scrape waited for the tricklers"
            );
            stop.store(true, Ordering::SeqCst);
        });
    }
}

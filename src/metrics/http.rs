//! A tiny HTTP/1.x responder for `GET /metrics` on a `std::net` listener: one background thread,
//! one request per connection, `Connection: close`. Enough for Prometheus scrapes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// A scraper sends its whole request at once; a client that stalls longer is dropped so it
/// cannot hold up the next scrape (requests are served one at a time).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(2);
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

/// Binds `addr` and serves `/metrics` from a thread named `litestream-metrics`.
pub fn start(addr: &str) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen_addr(addr))?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("litestream-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => crate::ffi::guard((), || {
                        if let Err(e) = serve_one(s) {
                            tracing::debug!(error = %e, "metrics: request failed");
                        }
                    }),
                    Err(e) => tracing::debug!(error = %e, "metrics: accept failed"),
                }
            }
        })?;
    Ok(local)
}

/// Starts the endpoint once per process when the configuration sets `addr`. A failure (port in
/// use, e.g. by a second process of the same app) is logged, never fatal.
pub fn start_configured(config: Option<&crate::config::Config>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    let Some(addr) = config.and_then(|c| c.addr.clone()) else {
        return;
    };
    STARTED.get_or_init(|| match start(&addr) {
        Ok(local) => tracing::info!(addr = %local, "serving metrics at /metrics"),
        Err(e) => tracing::warn!(addr = %addr, error = %e, "cannot serve metrics (is another process using this address?); replication is not affected"),
    });
}

fn serve_one(mut s: TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(REQUEST_READ_TIMEOUT))?;
    s.set_write_timeout(Some(RESPONSE_WRITE_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
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
    let (status, body) = respond(head.lines().next().unwrap_or(""));
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
fn respond(request_line: &str) -> (u16, String) {
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return (400, "bad request\n".into());
    };
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, super::render()),
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
        assert_eq!(respond("GET /metrics HTTP/1.1").0, 200);
        assert_eq!(respond("GET /metrics?x=1 HTTP/1.0").0, 200);
        assert_eq!(respond("GET / HTTP/1.1").0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1").0, 405);
        assert_eq!(respond("").0, 400);
    }

    #[test]
    fn serves_a_real_get() {
        crate::metrics::record_request("http-test", "GET");
        let addr = start("127.0.0.1:0").unwrap();
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
}

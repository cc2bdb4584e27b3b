//! A minimal HTTP/1.1 client (seeding the S3 emulator) and a counting proxy that sits between
//! the replicators and the emulator: it logs every request (kind, time it was acknowledged)
//! and keeps the bodies of uploaded L0 files, so lag to S3 is measured like lag to `file`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{failed, Context, Result};
use crate::sys::mono_ns;

/// Relay buffer: large enough for a page-sized LTX file in one read.
const RELAY_BUF: usize = 256 * 1024;

/// Request body of a client call.
pub enum Body<'a> {
    Empty,
    #[cfg_attr(not(test), allow(dead_code))] // the proxy tests send bytes
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Sends one request with `Connection: close` and returns the status and response body.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<(u16, Vec<u8>)> {
    let what = || format!("{method} {target} on 127.0.0.1:{port}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).ctx(what)?;
    let len = match &body {
        Body::Empty => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::File(p) => std::fs::metadata(p).ctx(what)?.len(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ctx(what)?;
    match body {
        Body::Empty => {}
        Body::Bytes(b) => s.write_all(b).ctx(what)?,
        Body::File(p) => {
            let mut f = std::fs::File::open(p).ctx(what)?;
            io::copy(&mut f, &mut s).ctx(what)?;
        }
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ctx(what)?;
    let status = parse_status(&resp).ok_or_else(|| failed(what(), "no HTTP status line"))?;
    let body_at = find(&resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
    Ok((status, resp[body_at..].to_vec()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_status(resp: &[u8]) -> Option<u16> {
    let line_end = find(resp, b"\r\n")?;
    let line = std::str::from_utf8(&resp[..line_end]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Request kinds, as object stores bill them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Put,
    Get,
    List,
    Delete,
    Head,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Put,
        Kind::Get,
        Kind::List,
        Kind::Delete,
        Kind::Head,
        Kind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Put => "PUT",
            Kind::Get => "GET",
            Kind::List => "LIST",
            Kind::Delete => "DELETE",
            Kind::Head => "HEAD",
            Kind::Other => "OTHER",
        }
    }
}

/// One proxied request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub t_start: u64,
    /// When the emulator's status line came back (the upload is acknowledged).
    pub t_ack: u64,
    pub method: String,
    /// Path-style `/bucket/key`, without the query.
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Decoded body of an L0 upload (`…/0000/<min>-<max>.ltx`).
    pub l0_body: Option<Vec<u8>>,
}

impl Logged {
    pub fn kind(&self) -> Kind {
        let key = self
            .path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(_, k)| k)
            .unwrap_or("");
        match self.method.as_str() {
            "PUT" => Kind::Put,
            "POST"
                if self
                    .query
                    .split('&')
                    .any(|q| q == "delete" || q == "delete=") =>
            {
                Kind::Delete
            }
            "POST" => Kind::Put,
            "GET" if key.is_empty() => Kind::List,
            "GET" => Kind::Get,
            "DELETE" => Kind::Delete,
            "HEAD" => Kind::Head,
            _ => Kind::Other,
        }
    }
}

/// The counting proxy: `127.0.0.1:<port>` → `127.0.0.1:<upstream>`.
pub struct Proxy {
    pub port: u16,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).ctx(|| "bind the proxy".to_string())?;
        let port = listener
            .local_addr()
            .ctx(|| "proxy address".to_string())?
            .port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("bench-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let l = Arc::clone(&l);
                    let _ = std::thread::Builder::new()
                        .name("bench-proxy-conn".into())
                        .spawn(move || {
                            let _ = serve(conn, upstream, &l);
                        });
                }
            })
            .ctx(|| "spawn the proxy".to_string())?;
        Ok(Proxy { port, log, stop })
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Serves one request on a client connection, then closes it (the emulator answers
/// `Connection: close`, so clients open a connection per request anyway).
fn serve(client: TcpStream, upstream: u16, log: &Mutex<Vec<Logged>>) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let t_start = mono_ns();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid("bad request line"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Err(invalid("eof in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        client_w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let n: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut b = Vec::with_capacity(n.min(64 << 20) as usize);
        (&mut reader).take(n).read_to_end(&mut b)?;
        b
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        let skip = [
            "expect",
            "transfer-encoding",
            "content-length",
            "connection",
        ];
        if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let is_l0 = method == "PUT" && path.ends_with(".ltx") && path.contains("/0000/");
    let l0_body = is_l0.then(|| {
        let chunked = header("content-encoding").is_some_and(|v| v.contains("aws-chunked"))
            || header("x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
        if chunked {
            crate::ltx::decode_aws_chunked(&body).unwrap_or_default()
        } else {
            body.clone()
        }
    });
    // Relay the response; it ends when the emulator closes (it answers `Connection: close`).
    let mut buf = vec![0u8; RELAY_BUF];
    let mut first = Vec::new();
    let mut status = None;
    let mut t_ack = 0;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if status.is_none() {
            first.extend_from_slice(&buf[..n]);
            if let Some(s) = parse_status(&first) {
                status = Some(s);
                t_ack = mono_ns();
            }
        }
        client_w.write_all(&buf[..n])?;
    }
    if let Ok(mut l) = log.lock() {
        l.push(Logged {
            t_start,
            t_ack: if t_ack == 0 { mono_ns() } else { t_ack },
            method,
            path,
            query,
            status: status.unwrap_or(0),
            l0_body,
        });
    }
    let _ = client_w.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads an HTTP `Transfer-Encoding: chunked` body (and its trailers).
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(out);
                }
            }
        }
        let start = out.len();
        out.resize(start + size, 0);
        r.read_exact(&mut out[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(method: &str, path: &str, query: &str) -> Logged {
        Logged {
            t_start: 0,
            t_ack: 0,
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status: 200,
            l0_body: None,
        }
    }

    #[test]
    fn requests_are_classified_like_s3_bills_them() {
        assert_eq!(logged("PUT", "/b/p/0000/x.ltx", "").kind(), Kind::Put);
        assert_eq!(
            logged("GET", "/b", "list-type=2&prefix=p").kind(),
            Kind::List
        );
        assert_eq!(logged("GET", "/b/", "prefix=p").kind(), Kind::List);
        assert_eq!(logged("GET", "/b/p/0000/x.ltx", "").kind(), Kind::Get);
        assert_eq!(logged("POST", "/b", "delete").kind(), Kind::Delete);
        assert_eq!(logged("DELETE", "/b/k", "").kind(), Kind::Delete);
        assert_eq!(logged("HEAD", "/b/k", "").kind(), Kind::Head);
    }

    #[test]
    fn proxy_relays_and_logs() {
        // A one-shot upstream that answers 200 and closes.
        let up = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let up_port = up.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = up.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
            }
            let mut body = [0u8; 5];
            r.read_exact(&mut body).unwrap();
            assert_eq!(&body, b"hello");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
        });
        let proxy = Proxy::start(up_port).unwrap();
        let (status, body) = request(
            proxy.port,
            "PUT",
            "/b/p/0000/0000000000000001-0000000000000001.ltx",
            &[],
            Body::Bytes(b"hello"),
        )
        .unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        let log = proxy.log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].kind(), Kind::Put);
        assert_eq!(log[0].l0_body.as_deref(), Some(&b"hello"[..]));
    }
}

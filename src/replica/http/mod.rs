//! A small blocking HTTP client for the backends that speak plain REST (`abs`, `gs`): hyper 1 +
//! rustls (ring, native roots), the same stack the S3 SDK uses, driven on the S3 runtime thread.
//!
//! Each request is retried on transport errors, 408, 429 and 5xx, with a short backoff, up to
//! [`Tuning::max_attempts`]; the uploader retries again on its own schedule. Every request is
//! counted in the metrics by kind (the backend names it). Nothing here logs a header value or
//! a query string: callers put secrets there (signatures, SAS tokens, bearer tokens).

mod body;
mod reader;
pub mod xml;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

pub use body::Body;
pub use reader::BodyReader;

use super::s3::runtime;
use super::ReplicaError;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Timeouts and retries; defaults from the constants below, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// TCP + TLS handshake: a healthy store answers in well under a second; 10 s tolerates a
    /// slow link and still notices a dead endpoint quickly.
    pub connect_timeout: Duration,
    /// One attempt of a request without a large body, and the wait for a download's headers.
    pub attempt_timeout: Duration,
    /// Lowest upload rate tolerated: a body of `n` bytes may take
    /// `attempt_timeout + n / min_upload_rate` before the attempt is abandoned.
    pub min_upload_rate: u64,
    /// Longest wait for the next chunk of a downloaded body.
    pub body_chunk_timeout: Duration,
    /// Attempts per request (the uploader retries again on its own schedule).
    pub max_attempts: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: CONNECT_TIMEOUT,
            attempt_timeout: ATTEMPT_TIMEOUT,
            min_upload_rate: MIN_UPLOAD_RATE,
            body_chunk_timeout: BODY_CHUNK_TIMEOUT,
            max_attempts: MAX_ATTEMPTS,
        }
    }
}

/// See [`Tuning::connect_timeout`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`Tuning::attempt_timeout`]: the stores answer small requests in milliseconds to a few
/// seconds; a stalled connection is given up after this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// See [`Tuning::min_upload_rate`]: 128 KiB/s, far below any link a replica is useful on.
const MIN_UPLOAD_RATE: u64 = 128 * 1024;
/// See [`Tuning::body_chunk_timeout`]: the same patience as for a whole small request.
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Same as the S3 client: one retry beyond it rarely helps, the uploader's backoff takes over.
const MAX_ATTEMPTS: u32 = 3;
/// First backoff between attempts; doubled each time. Short: the uploader backs off longer.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Bytes of an error answer kept for the message (enough for the store's error code and text).
const ERROR_BODY_LIMIT: usize = 2048;

/// One request. `body` is sent from memory (callers split large files into parts).
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Request {
    pub fn new(method: Method, url: String) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Bytes(Bytes::new()),
        }
    }

    /// Adds a header; names and values come from code, so a bad one is a programming error
    /// reported as a fatal request error later.
    pub fn header(mut self, name: &'static str, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), v);
        }
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Sends the first `len` bytes of the file at `path`, streamed from disk.
    pub fn file_body(mut self, path: &std::path::Path, len: u64) -> Request {
        self.body = Body::File {
            path: path.to_path_buf(),
            len,
        };
        self
    }
}

/// A complete (small) answer.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The start of the body as text, for error messages.
    pub fn body_text(&self) -> String {
        let end = self.body.len().min(ERROR_BODY_LIMIT);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// Prepares a request for each attempt (a fresh date and signature every time).
pub trait Sign: Send + Sync {
    fn sign(&self, req: &mut Request) -> Result<(), ReplicaError>;
}

/// The shared client of one replica.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Https, body::ReqBody>,
    tuning: Tuning,
    replica_type: &'static str,
}

/// Why an attempt failed before any answer.
enum AttemptError {
    Transport(String),
    Timeout,
}

impl HttpClient {
    /// A client for `replica_type` (metrics label). Makes no request.
    pub fn new(replica_type: &'static str, tuning: Tuning) -> Result<HttpClient, ReplicaError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(tuning.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| ReplicaError::Fatal {
                key: replica_type.to_string(),
                reason: format!("cannot load the system's CA certificates: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(HttpClient {
            client,
            tuning,
            replica_type,
        })
    }

    /// Sends `req` (signed by `sign` before each attempt) and reads the whole answer. Retries
    /// transient failures; returns the last answer whatever its status (callers map statuses),
    /// or a transient error when no answer came.
    pub fn send(
        &self,
        kind: &'static str,
        shown: &str,
        req: Request,
        sign: &dyn Sign,
    ) -> Result<Response, ReplicaError> {
        let (head, body) = self.send_streaming(kind, shown, req, sign)?;
        self.collect(kind, shown, head, body)
    }

    /// Reads a whole (small) answer body.
    pub fn collect(
        &self,
        kind: &'static str,
        shown: &str,
        head: http::response::Parts,
        body: hyper::body::Incoming,
    ) -> Result<Response, ReplicaError> {
        if body_is_empty(&head) {
            return Ok(Response {
                status: head.status,
                headers: head.headers,
                body: Bytes::new(),
            });
        }
        let limit = self.tuning.attempt_timeout;
        let collected =
            runtime::block_on(async move { tokio::time::timeout(limit, body.collect()).await })
                .map_err(|e| transient(shown, e.to_string()))?
                .map_err(|_| transient(shown, format!("{kind}: the answer timed out")))?
                .map_err(|e| transient(shown, format!("{kind}: reading the answer: {e}")))?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: collected.to_bytes(),
        })
    }

    /// A download: the body of a `200 OK` answer as a reader, each chunk bounded by
    /// `chunk_timeout`. Any other answer is read whole and turned into the error by `on_error`.
    pub fn get_reader(
        &self,
        shown: String,
        req: Request,
        sign: &dyn Sign,
        chunk_timeout: Duration,
        on_error: impl FnOnce(&Response) -> ReplicaError,
    ) -> Result<Box<dyn std::io::Read + Send>, ReplicaError> {
        let (head, body) = self.send_streaming("GET", &shown, req, sign)?;
        if head.status != StatusCode::OK {
            let resp = self.collect("GET", &shown, head, body)?;
            return Err(on_error(&resp));
        }
        Ok(Box::new(BodyReader::new(body, shown, chunk_timeout)))
    }

    /// Like [`send`](Self::send) but hands back the body unread (downloads).
    pub fn send_streaming(
        &self,
        kind: &'static str,
        shown: &str,
        req: Request,
        sign: &dyn Sign,
    ) -> Result<(http::response::Parts, hyper::body::Incoming), ReplicaError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut r = req.clone();
            sign.sign(&mut r)?;
            let timeout =
                self.tuning.attempt_timeout + upload_allowance(r.body.len(), &self.tuning);
            crate::metrics::record_request(self.replica_type, kind);
            if !r.body.is_empty() {
                crate::metrics::record_request_bytes(self.replica_type, kind, r.body.len());
            }
            let outcome = self.attempt(r, timeout);
            let retry_reason = match &outcome {
                Ok((head, _)) if is_retryable(head.status) => format!("HTTP {}", head.status),
                Ok(_) => String::new(),
                Err(AttemptError::Timeout) => format!("no answer within {} s", timeout.as_secs()),
                Err(AttemptError::Transport(e)) => e.clone(),
            };
            if retry_reason.is_empty() {
                return outcome.map_err(|_| transient(shown, "unreachable".to_string()));
            }
            crate::metrics::record_request_error(self.replica_type, kind);
            if attempt >= self.tuning.max_attempts {
                return match outcome {
                    Ok(parts) => Ok(parts),
                    Err(_) => Err(transient(shown, format!("{kind}: {retry_reason}"))),
                };
            }
            tracing::debug!(key = %shown, kind, attempt, reason = %retry_reason, "retrying request");
            std::thread::sleep(backoff);
            backoff *= 2;
            attempt += 1;
        }
    }

    fn attempt(
        &self,
        r: Request,
        timeout: Duration,
    ) -> Result<(http::response::Parts, hyper::body::Incoming), AttemptError> {
        let mut builder = http::Request::builder().method(r.method).uri(&r.url);
        if let Some(h) = builder.headers_mut() {
            *h = r.headers;
            // Stores refuse a PUT or POST without a length, even an empty one.
            h.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(r.body.len()),
            );
        }
        let body = r
            .body
            .open()
            .map_err(|e| AttemptError::Transport(format!("cannot read the upload: {e}")))?;
        let req = builder
            .body(body)
            .map_err(|e| AttemptError::Transport(format!("bad request: {e}")))?;
        let client = self.client.clone();
        let fut = async move { tokio::time::timeout(timeout, client.request(req)).await };
        match runtime::block_on(fut) {
            Err(e) => Err(AttemptError::Transport(e.to_string())),
            Ok(Err(_)) => Err(AttemptError::Timeout),
            Ok(Ok(Err(e))) => Err(AttemptError::Transport(describe_hyper(&e))),
            Ok(Ok(Ok(resp))) => Ok(resp.into_parts()),
        }
    }
}

fn body_is_empty(head: &http::response::Parts) -> bool {
    head.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        == Some("0")
}

fn upload_allowance(len: u64, t: &Tuning) -> Duration {
    Duration::from_secs(len / t.min_upload_rate.max(1))
}

fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The error chain of a hyper client error, without the URL (which may hold a SAS token).
fn describe_hyper(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = String::from("connection failed");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

pub fn transient(key: &str, reason: String) -> ReplicaError {
    ReplicaError::Transient {
        key: key.to_string(),
        reason,
    }
}

/// Maps an answer the backend did not expect: 404 → not found, 408/429/5xx → transient,
/// 401/403 → fatal with a hint to check `credentials_hint`, anything else fatal.
pub fn unexpected(
    kind: &str,
    shown: &str,
    resp: &Response,
    detail: &str,
    hint: &str,
) -> ReplicaError {
    let key = shown.to_string();
    let status = resp.status;
    let reason = format!("{kind}: HTTP {status}{detail}");
    match status {
        StatusCode::NOT_FOUND => ReplicaError::NotFound { key },
        s if is_retryable(s) => ReplicaError::Transient { key, reason },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ReplicaError::Fatal {
            key,
            reason: format!("{reason}; access denied: {hint}"),
        },
        _ => ReplicaError::Fatal { key, reason },
    }
}

/// Percent-encodes `s` for a URL path (`/` kept when `keep_slash`) or a query value.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses an HTTP date (`Wed, 09 Sep 2009 09:20:02 GMT`).
pub fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s.trim(), &fmt).ok()?;
    let secs = t.assume_utc().unix_timestamp();
    Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The current time as an HTTP date.
pub fn http_date_now() -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        let t = parse_http_date("Wed, 09 Sep 2009 09:20:02 GMT").expect("parse");
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_252_488_002);
        assert!(parse_http_date(&http_date_now()).is_some());
        assert!(parse_http_date("not a date").is_none());
    }

    #[test]
    fn encoding_keeps_unreserved_characters() {
        assert_eq!(encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(encode("a b/c", false), "a%20b%2Fc");
    }

    #[test]
    fn retryable_statuses() {
        assert!(is_retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_retryable(StatusCode::PRECONDITION_FAILED));
        assert!(!is_retryable(StatusCode::NOT_FOUND));
    }
}

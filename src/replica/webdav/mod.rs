//! The `webdav` backend: any WebDAV server (RFC 4918) over hyper + rustls, laid out like
//! Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx` under `webdav-url`, parent collections
//! created (MKCOL) when a PUT finds them missing.
//!
//! Uploads go to a temporary name in the level collection and are MOVEd into place, so a reader
//! never sees a partial file (the official client PUTs in place). The LTX timestamp is kept in a
//! dead property `litestream-timestamp` (PROPPATCH) when the server stores them; otherwise, and
//! for files the official binary wrote, listing uses `getlastmodified` (whole seconds, upload
//! time), as the official binary does.
//!
//! Small objects (the writer lease) are read and written under an exclusive WebDAV LOCK on a
//! companion resource, see [`objects`].
//!
//! No request is made until the uploader or a restore asks for one; an idle replica makes none.

mod locked_objects;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use base64::Engine;
use http::{Method, StatusCode};

use super::http::{self as h, HttpClient, Request, Response, Sign, Tuning};
use super::join_key as join;
use super::s3::{format_timestamp, parse_timestamp};
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::config::WebdavConfig;
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// Dead property holding the LTX timestamp (RFC 3339), in namespace [`PROP_NAMESPACE`].
pub const TIMESTAMP_PROPERTY: &str = "litestream-timestamp";
const PROP_NAMESPACE: &str = "urn:x-litestream:";
/// What a 401/403 most likely means, for the error message.
const AUTH_HINT: &str = "check `webdav-username` and `webdav-password`";
/// PROPFIND body: every property, dead ones included (where our timestamp lives).
const PROPFIND_ALLPROP: &str =
    r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

/// Adds HTTP Basic credentials (when a user is configured). No `Debug`: it holds the password.
struct BasicAuth(Option<String>);

impl Sign for BasicAuth {
    fn sign(&self, req: &mut Request) -> Result<(), ReplicaError> {
        if let Some(v) = &self.0 {
            let r = std::mem::replace(req, Request::new(Method::GET, String::new()));
            *req = r.header("authorization", v);
        }
        Ok(())
    }
}

/// A WebDAV replica. Cheap to share; the HTTP client is built on first use.
pub struct WebdavReplica {
    cfg: WebdavConfig,
    auth: BasicAuth,
    tuning: Tuning,
    http: OnceLock<HttpClient>,
}

impl WebdavReplica {
    /// A replica for `cfg`. Makes no request.
    pub fn new(cfg: &WebdavConfig) -> WebdavReplica {
        Self::with_tuning(cfg, Tuning::default())
    }

    pub fn with_tuning(cfg: &WebdavConfig, tuning: Tuning) -> WebdavReplica {
        let auth = cfg.username.as_ref().map(|u| {
            let pair = format!("{u}:{}", cfg.password.as_deref().unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        WebdavReplica {
            cfg: cfg.clone(),
            auth: BasicAuth(auth),
            tuning,
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<&HttpClient, ReplicaError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = HttpClient::new("webdav", self.tuning)?;
        tracing::info!(replica = %self.describe(), "webdav client ready");
        Ok(self.http.get_or_init(|| client))
    }

    /// `<path>/ltx/<level>` (Litestream's `LTXLevelDir`).
    pub fn level_dir(&self, level: u8) -> String {
        join(&self.cfg.path, &format!("ltx/{level}"))
    }

    /// The path (under `webdav-url`) of one LTX file.
    pub fn file_path(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), format_file_name(min, max))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.cfg.url, h::encode(path, true))
    }

    fn shown(&self, path: &str) -> String {
        format!("{}/{path}", crate::config::redact_url(&self.cfg.url))
    }

    fn send(&self, kind: &'static str, path: &str, req: Request) -> Result<Response, ReplicaError> {
        self.http()?.send(kind, &self.shown(path), req, &self.auth)
    }

    fn error(&self, kind: &str, path: &str, resp: &Response) -> ReplicaError {
        let body = resp.body_text();
        let line = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let detail = if line.len() < 200 && !line.trim_start().starts_with('<') {
            format!(": {}", line.trim())
        } else {
            String::new()
        };
        h::unexpected(kind, &self.shown(path), resp, &detail, AUTH_HINT)
    }

    /// Creates `dir` and every missing parent collection (MKCOL from the top).
    fn make_collections(&self, dir: &str) -> Result<(), ReplicaError> {
        let mut cur = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            let req = Request::new(method("MKCOL"), format!("{}/", self.url(&cur)));
            let resp = self.send("MKCOL", &cur, req)?;
            // 201 created; 405 (or 301 to the slash form) already exists.
            let ok = resp.status.is_success()
                || resp.status == StatusCode::METHOD_NOT_ALLOWED
                || resp.status.is_redirection();
            if !ok {
                return Err(self.error("MKCOL", &cur, &resp));
            }
        }
        Ok(())
    }

    /// PUTs `body` to `path`, creating the parent collections when the server says they are
    /// missing (409).
    fn put_creating_parents(&self, path: &str, req: Request) -> Result<(), ReplicaError> {
        let resp = self.send("PUT", path, req.clone())?;
        if resp.status.is_success() {
            return Ok(());
        }
        if resp.status != StatusCode::CONFLICT && resp.status != StatusCode::NOT_FOUND {
            return Err(self.error("PUT", path, &resp));
        }
        let parent = path.rsplit_once('/').map_or("", |(d, _)| d);
        self.make_collections(parent)?;
        let resp = self.send("PUT", path, req)?;
        if resp.status.is_success() {
            Ok(())
        } else {
            Err(self.error("PUT", path, &resp))
        }
    }

    /// MOVEs `from` onto `to`, replacing it.
    fn move_onto(&self, from: &str, to: &str) -> Result<(), ReplicaError> {
        let req = Request::new(method("MOVE"), self.url(from))
            .header("destination", &self.url(to))
            .header("overwrite", "T");
        let resp = self.send("MOVE", to, req)?;
        if resp.status.is_success() {
            Ok(())
        } else {
            Err(self.error("MOVE", to, &resp))
        }
    }

    /// Stores `req`'s body at `path` atomically: PUT to a temporary name beside it, optionally
    /// PROPPATCH the timestamp, then MOVE into place. The temporary file is removed on failure.
    fn store(&self, path: &str, req: Request, timestamp: Option<&str>) -> Result<(), ReplicaError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let tmp = join(dir, &format!(".{name}.tmp-{:016x}", fastrand::u64(..)));
        let mut req = req;
        req.url = self.url(&tmp);
        self.put_creating_parents(&tmp, req)?;
        let result = timestamp
            .map_or(Ok(()), |ts| self.set_timestamp(&tmp, ts))
            .and_then(|()| self.move_onto(&tmp, path));
        if result.is_err() {
            let _ = self.send("DELETE", &tmp, Request::new(Method::DELETE, self.url(&tmp)));
        }
        result
    }

    /// Records the LTX timestamp as a dead property. A server without dead properties (405,
    /// 403, 501) is tolerated: listing then falls back to `getlastmodified`.
    fn set_timestamp(&self, path: &str, ts: &str) -> Result<(), ReplicaError> {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:L="{PROP_NAMESPACE}"><D:set><D:prop><L:{TIMESTAMP_PROPERTY}>{}</L:{TIMESTAMP_PROPERTY}></D:prop></D:set></D:propertyupdate>"#,
            h::xml::escape(ts)
        );
        let req = Request::new(method("PROPPATCH"), self.url(path))
            .header("content-type", "application/xml; charset=utf-8")
            .body(body);
        let resp = self.send("PROPPATCH", path, req)?;
        // 207 can still report a failed property; the timestamp is best effort either way.
        if !resp.status.is_success() {
            tracing::debug!(key = %self.shown(path), status = %resp.status, "the server keeps no timestamp property; file times come from getlastmodified");
        }
        Ok(())
    }

    fn delete_path(&self, path: &str) -> Result<(), ReplicaError> {
        let resp = self.send("DELETE", path, Request::new(Method::DELETE, self.url(path)))?;
        match resp.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.error("DELETE", path, &resp)),
        }
    }
}

/// The last segment of an `href` (absolute URL or path), percent-decoded; `None` for a
/// collection (trailing `/`).
fn href_name(href: &str) -> Option<String> {
    let path = href
        .split_once("://")
        .map_or(href, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    if path.ends_with('/') {
        return None;
    }
    let last = path.rsplit('/').next()?;
    Some(percent_decode(last))
}

/// Decodes `%XX` escapes; invalid ones stay as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A WebDAV method (extension methods are valid HTTP tokens).
pub(crate) fn method(name: &'static str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

/// The files of one PROPFIND (Depth: 1) answer for `level`.
fn parse_listing(xml: &str, level: u8) -> Result<Vec<LtxFileInfo>, h::xml::XmlError> {
    // (name, size, last modified, timestamp property) of the response being read.
    type Entry = (
        Option<String>,
        u64,
        Option<std::time::SystemTime>,
        Option<std::time::SystemTime>,
    );
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    let mut finish = |e: Option<Entry>| {
        let Some((Some(name), size, modified, stamped)) = e else {
            return;
        };
        if let Some((min_txid, max_txid)) = parse_file_name(&name) {
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size,
                created_at: stamped.or(modified).unwrap_or(UNIX_EPOCH),
            });
        }
    };
    for (path, text) in h::xml::leaves(xml)? {
        let leaf = path.rsplit('/').next().unwrap_or_default();
        if path.ends_with("response/href") {
            finish(cur.take());
            cur = Some((href_name(text.trim()), 0, None, None));
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        match leaf {
            "getcontentlength" => c.1 = text.trim().parse().unwrap_or(0),
            "getlastmodified" => c.2 = h::parse_http_date(&text),
            TIMESTAMP_PROPERTY => c.3 = parse_timestamp(text.trim()),
            _ => {}
        }
    }
    finish(cur.take());
    Ok(out)
}

impl ReplicaClient for WebdavReplica {
    fn kind(&self) -> &'static str {
        "webdav"
    }

    fn describe(&self) -> String {
        crate::config::ReplicaConfig {
            backend: crate::config::Backend::Webdav(self.cfg.clone()),
            sync_interval: crate::config::DEFAULT_SYNC_INTERVAL,
        }
        .url()
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&self.file_path(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let dir = self.level_dir(level);
        let req = Request::new(method("PROPFIND"), format!("{}/", self.url(&dir)))
            .header("depth", "1")
            .header("content-type", "application/xml; charset=utf-8")
            .body(PROPFIND_ALLPROP);
        let resp = self.send("LIST", &dir, req)?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if resp.status.as_u16() != 207 {
            return Err(self.error("PROPFIND", &dir, &resp));
        }
        let mut files =
            parse_listing(&String::from_utf8_lossy(&resp.body), level).map_err(|m| {
                ReplicaError::Fatal {
                    key: self.shown(&dir),
                    reason: format!("PROPFIND: {m}"),
                }
            })?;
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let path = self.file_path(level, min, max);
        let c = self.http()?;
        let shown = self.shown(&path);
        let req = Request::new(Method::GET, self.url(&path));
        c.get_reader(
            shown,
            req,
            &self.auth,
            self.tuning.body_chunk_timeout,
            |resp| self.error("GET", &path, resp),
        )
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        let path = self.file_path(level, min, max);
        let size = std::fs::metadata(src)
            .map_err(|e| ReplicaError::from_io(src.display().to_string(), e))?
            .len();
        let req = Request::new(Method::PUT, String::new())
            .header("content-type", "application/octet-stream")
            .file_body(src, size);
        self.store(&path, req, Some(&format_timestamp(timestamp_ms)))?;
        tracing::debug!(key = %self.shown(&path), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        for f in files {
            self.delete_path(&self.file_path(f.level, f.min_txid, f.max_txid))?;
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        locked_objects::read(self, name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        locked_objects::write(self, name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        locked_objects::delete(self, name)
    }
}

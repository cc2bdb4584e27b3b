//! The `abs` backend: Azure Blob Storage over its REST API (hyper + rustls, Shared Key or SAS),
//! laid out like Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx` in the container, with
//! blob metadata `litestreamtimestamp` (RFC 3339) holding the LTX timestamp, which listing
//! returns at no extra cost (spec §1.1, §1.2).
//!
//! Writer fencing uses the Blob service's own conditional writes: `If-None-Match: *` to create
//! the lease blob, `If-Match: <ETag>` to replace it.
//!
//! No request is made until the uploader or a restore asks for one; an idle replica makes none.

mod credentials;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};

use self::credentials::Signer;
use super::http::{self as h, HttpClient, Request, Response, Tuning};
use super::join_key as join;
use super::s3::{format_timestamp, parse_timestamp};
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::config::AbsConfig;
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// Blob metadata key of the LTX timestamp (Azure metadata names cannot hold `-`).
pub const TIMESTAMP_METADATA: &str = "litestreamtimestamp";
/// Files up to this size go up in one Put Blob from memory; larger ones as blocks of this size
/// (Put Block + Put Block List), so memory stays bounded whatever the file size. 8 MiB keeps a
/// retry cheap and stays far below the 4000 MiB block limit.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// What a 403 most likely means, for the error message.
const AUTH_HINT: &str = "check `account-name`, `account-key` or `sas-token`, and `endpoint`";

/// Why the replica cannot make requests; found when it is built, reported at its first use.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("no account name: set `account-name` (or abs://ACCOUNT@CONTAINER/…) or `endpoint`")]
    NoAccount,
    #[error("{0}")]
    Credentials(String),
}

/// An Azure Blob Storage replica. Cheap to share; the HTTP client is built on first use.
pub struct AbsReplica {
    cfg: AbsConfig,
    /// Service URL without a trailing `/` (`https://ACCOUNT.blob.core.windows.net`).
    endpoint: Result<String, SetupError>,
    signer: Result<Signer, SetupError>,
    tuning: Tuning,
    http: OnceLock<HttpClient>,
}

impl AbsReplica {
    /// A replica for `cfg`, with credentials from the process environment. Makes no request.
    pub fn new(cfg: &AbsConfig) -> AbsReplica {
        Self::with_env(cfg, &|k| std::env::var(k).ok(), Tuning::default())
    }

    pub fn with_env(
        cfg: &AbsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        tuning: Tuning,
    ) -> AbsReplica {
        let shown = base_url(cfg);
        let endpoint = match (&cfg.endpoint, credentials::account_name(cfg, env)) {
            (Some(e), _) => Ok(e.trim_end_matches('/').to_string()),
            (None, Some(a)) => Ok(format!("https://{a}.blob.core.windows.net")),
            (None, None) => Err(SetupError::NoAccount),
        };
        AbsReplica {
            cfg: cfg.clone(),
            endpoint,
            signer: credentials::resolve(cfg, env, &shown)
                .map(|creds| Signer { creds })
                .map_err(|e| {
                    SetupError::Credentials(match e {
                        ReplicaError::Fatal { reason, .. } => reason,
                        other => other.to_string(),
                    })
                }),
            tuning,
            http: OnceLock::new(),
        }
    }

    fn fatal(&self, key: &str, reason: &str) -> ReplicaError {
        ReplicaError::Fatal {
            key: self.shown(key),
            reason: reason.to_string(),
        }
    }

    fn http(&self) -> Result<(&HttpClient, &Signer, &str), ReplicaError> {
        let signer = self
            .signer
            .as_ref()
            .map_err(|e| self.fatal("", &e.to_string()))?;
        let endpoint = self
            .endpoint
            .as_ref()
            .map_err(|e| self.fatal("", &e.to_string()))?;
        if let Some(c) = self.http.get() {
            return Ok((c, signer, endpoint));
        }
        let client = HttpClient::new("abs", self.tuning)?;
        tracing::info!(replica = %self.describe(), credentials = signer.creds.name(), "abs client ready");
        Ok((self.http.get_or_init(|| client), signer, endpoint))
    }

    /// `<path>/ltx/<level>` (Litestream's `LTXLevelDir`).
    pub fn level_dir(&self, level: u8) -> String {
        join(&self.cfg.path, &format!("ltx/{level}"))
    }

    /// The blob name of one LTX file.
    pub fn blob_name(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), format_file_name(min, max))
    }

    fn object_name(&self, name: &str) -> Result<String, ReplicaError> {
        super::small_object_key(&self.cfg.path, name)
    }

    fn shown(&self, blob: &str) -> String {
        format!("{}/{blob}", base_url(&self.cfg))
    }

    fn blob_url(&self, endpoint: &str, blob: &str) -> String {
        format!(
            "{endpoint}/{}/{}",
            h::encode(&self.cfg.bucket, false),
            h::encode(blob, true)
        )
    }

    fn send(&self, kind: &'static str, blob: &str, req: Request) -> Result<Response, ReplicaError> {
        let (c, s, _) = self.http()?;
        c.send(kind, &self.shown(blob), req, s)
    }

    fn error(&self, kind: &str, blob: &str, resp: &Response) -> ReplicaError {
        h::unexpected(kind, &self.shown(blob), resp, &detail(resp), AUTH_HINT)
    }

    #[cfg(test)]
    /// Creates the container (first-time setup and tests); an existing one is fine.
    pub fn create_container(&self) -> Result<(), ReplicaError> {
        let (_, _, endpoint) = self.http()?;
        let url = format!(
            "{endpoint}/{}?restype=container",
            h::encode(&self.cfg.bucket, false)
        );
        let resp = self.send("PUT", "", Request::new(Method::PUT, url))?;
        match resp.status {
            s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            _ => Err(self.error("PUT container", "", &resp)),
        }
    }

    /// Stores `data` under `blob`; returns the new ETag.
    fn put_blob(
        &self,
        blob: &str,
        data: Bytes,
        timestamp: Option<&str>,
        cond: &WriteCondition,
    ) -> Result<Response, ReplicaError> {
        let (_, _, endpoint) = self.http()?;
        let mut req = Request::new(Method::PUT, self.blob_url(endpoint, blob))
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-type", "application/octet-stream")
            .body(data);
        if let Some(ts) = timestamp {
            req = req.header("x-ms-meta-litestreamtimestamp", ts);
        }
        req = match cond {
            WriteCondition::Always => req,
            WriteCondition::IfAbsent => req.header("if-none-match", "*"),
            WriteCondition::IfMatch(tag) => req.header("if-match", tag),
        };
        self.send("PUT", blob, req)
    }

    /// Uploads a large file as blocks of [`BLOCK_SIZE`], then commits the block list.
    fn put_blocks(&self, blob: &str, src: &Path, timestamp: &str) -> Result<(), ReplicaError> {
        let (_, _, endpoint) = self.http()?;
        let io = |e| ReplicaError::from_io(src.display().to_string(), e);
        let mut file = std::fs::File::open(src).map_err(io)?;
        let mut ids = Vec::new();
        let mut buf = vec![0u8; BLOCK_SIZE];
        loop {
            let n = read_full(&mut file, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            use base64::Engine;
            let id =
                base64::engine::general_purpose::STANDARD.encode(format!("block-{:08}", ids.len()));
            let url = format!(
                "{}?comp=block&blockid={}",
                self.blob_url(endpoint, blob),
                h::encode(&id, false)
            );
            let req = Request::new(Method::PUT, url).body(Bytes::copy_from_slice(&buf[..n]));
            let resp = self.send("PUT", blob, req)?;
            if !resp.status.is_success() {
                return Err(self.error("Put Block", blob, &resp));
            }
            ids.push(id);
        }
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        let url = format!("{}?comp=blocklist", self.blob_url(endpoint, blob));
        let req = Request::new(Method::PUT, url)
            .header("x-ms-blob-content-type", "application/octet-stream")
            .header("x-ms-meta-litestreamtimestamp", timestamp)
            .header("content-type", "application/xml")
            .body(list);
        let resp = self.send("PUT", blob, req)?;
        if !resp.status.is_success() {
            return Err(self.error("Put Block List", blob, &resp));
        }
        Ok(())
    }

    fn delete_blob(&self, blob: &str) -> Result<(), ReplicaError> {
        let (_, _, endpoint) = self.http()?;
        let resp = self.send(
            "DELETE",
            blob,
            Request::new(Method::DELETE, self.blob_url(endpoint, blob)),
        )?;
        match resp.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.error("DELETE", blob, &resp)),
        }
    }
}

/// `abs://[ACCOUNT@]CONTAINER[/path]` (no secrets), the prefix of every shown key.
fn base_url(cfg: &AbsConfig) -> String {
    let mut c = cfg.clone();
    c.path.clear();
    let mut out = crate::config::ReplicaConfig {
        backend: crate::config::Backend::Abs(c),
        sync_interval: crate::config::DEFAULT_SYNC_INTERVAL,
    }
    .url();
    if !cfg.path.is_empty() {
        out.push('/');
        out.push_str(&cfg.path);
    }
    out
}

/// The service's error code and message, for error texts (never a header that holds a secret).
fn detail(resp: &Response) -> String {
    let code = resp
        .header("x-ms-error-code")
        .unwrap_or_default()
        .to_string();
    let message = h::xml::leaves(&resp.body_text())
        .ok()
        .and_then(|l| l.into_iter().find(|(p, _)| p == "Error/Message"))
        .map(|(_, m)| m.lines().next().unwrap_or_default().to_string())
        .unwrap_or_default();
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" ({code})"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" ({code}): {message}"),
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One page of List Blobs: the files of `prefix` and the next marker.
fn parse_list(
    xml: &str,
    prefix: &str,
    level: u8,
) -> Result<(Vec<LtxFileInfo>, Option<String>), h::xml::XmlError> {
    let mut out = Vec::new();
    let mut next = None;
    // (name, size, creation time, metadata timestamp) of the blob being read.
    let mut cur: Option<(String, u64, Option<SystemTime>, Option<SystemTime>)> = None;
    let mut finish = |cur: Option<(String, u64, Option<SystemTime>, Option<SystemTime>)>| {
        let Some((name, size, created, stamped)) = cur else {
            return;
        };
        let Some(base) = name.strip_prefix(prefix).filter(|b| !b.contains('/')) else {
            return;
        };
        if let Some((min_txid, max_txid)) = parse_file_name(base) {
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size,
                created_at: stamped.or(created).unwrap_or(UNIX_EPOCH),
            });
        }
    };
    for (path, text) in h::xml::leaves(xml)? {
        match path.as_str() {
            "EnumerationResults/Blobs/Blob/Name" => {
                finish(cur.take());
                cur = Some((text, 0, None, None));
            }
            "EnumerationResults/Blobs/Blob/Properties/Content-Length" => {
                if let Some(c) = cur.as_mut() {
                    c.1 = text.trim().parse().unwrap_or(0);
                }
            }
            "EnumerationResults/Blobs/Blob/Properties/Creation-Time" => {
                if let Some(c) = cur.as_mut() {
                    c.2 = h::parse_http_date(&text);
                }
            }
            p if p == format!("EnumerationResults/Blobs/Blob/Metadata/{TIMESTAMP_METADATA}") => {
                if let Some(c) = cur.as_mut() {
                    c.3 = parse_timestamp(text.trim());
                }
            }
            "EnumerationResults/NextMarker" => next = Some(text),
            _ => {}
        }
    }
    finish(cur.take());
    Ok((out, next.filter(|m| !m.is_empty())))
}

impl ReplicaClient for AbsReplica {
    fn kind(&self) -> &'static str {
        "abs"
    }

    fn describe(&self) -> String {
        match &self.cfg.endpoint {
            Some(e) => format!(
                "{}?endpoint={}",
                base_url(&self.cfg),
                crate::config::redact_url(e)
            ),
            None => base_url(&self.cfg),
        }
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&self.blob_name(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let prefix = format!("{}/", self.level_dir(level));
        let (_, _, endpoint) = self.http()?;
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = format!(
                "{endpoint}/{}?restype=container&comp=list&include=metadata&prefix={}",
                h::encode(&self.cfg.bucket, false),
                h::encode(&prefix, false)
            );
            if let Some(m) = &marker {
                url.push_str(&format!("&marker={}", h::encode(m, false)));
            }
            let resp = self.send("LIST", &prefix, Request::new(Method::GET, url))?;
            if resp.status == StatusCode::NOT_FOUND {
                return Err(self.fatal(
                    &prefix,
                    &format!(
                        "LIST: container {:?} does not exist{}: create it first",
                        self.cfg.bucket,
                        detail(&resp)
                    ),
                ));
            }
            if !resp.status.is_success() {
                return Err(self.error("LIST", &prefix, &resp));
            }
            let (files, next) = parse_list(&String::from_utf8_lossy(&resp.body), &prefix, level)
                .map_err(|m| self.fatal(&prefix, &format!("LIST: {m}")))?;
            out.extend(files);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let blob = self.blob_name(level, min, max);
        let (c, s, endpoint) = self.http()?;
        let shown = self.shown(&blob);
        let req = Request::new(Method::GET, self.blob_url(endpoint, &blob));
        c.get_reader(shown, req, s, self.tuning.body_chunk_timeout, |resp| {
            self.error("GET", &blob, resp)
        })
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        let blob = self.blob_name(level, min, max);
        let io = |e| ReplicaError::from_io(src.display().to_string(), e);
        let size = std::fs::metadata(src).map_err(io)?.len();
        let ts = format_timestamp(timestamp_ms);
        if size as usize > BLOCK_SIZE {
            self.put_blocks(&blob, src, &ts)?;
        } else {
            let data = std::fs::read(src).map_err(io)?;
            let resp = self.put_blob(&blob, data.into(), Some(&ts), &WriteCondition::Always)?;
            if !resp.status.is_success() {
                return Err(self.error("PUT", &blob, &resp));
            }
        }
        tracing::debug!(key = %self.shown(&blob), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        for f in files {
            self.delete_blob(&self.blob_name(f.level, f.min_txid, f.max_txid))?;
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        let blob = self.object_name(name)?;
        let (_, _, endpoint) = self.http()?;
        let resp = self.send(
            "GET",
            &blob,
            Request::new(Method::GET, self.blob_url(endpoint, &blob)),
        )?;
        if resp.status != StatusCode::OK {
            return Err(self.error("GET", &blob, &resp));
        }
        Ok(VersionedObject {
            version: resp.header("etag").unwrap_or_default().to_string(),
            data: resp.body.to_vec(),
        })
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        let blob = self.object_name(name)?;
        let resp = self.put_blob(&blob, Bytes::copy_from_slice(data), None, &cond)?;
        let key = self.shown(&blob);
        match (resp.status, &cond) {
            (s, _) if s.is_success() => Ok(resp.header("etag").unwrap_or_default().to_string()),
            (StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED, WriteCondition::IfAbsent) => {
                Err(ReplicaError::AlreadyExists { key })
            }
            (StatusCode::PRECONDITION_FAILED, WriteCondition::IfMatch(tag)) => {
                Err(ReplicaError::Precondition {
                    key,
                    reason: format!("the blob's ETag is no longer {tag}"),
                })
            }
            _ => Err(self.error("PUT", &blob, &resp)),
        }
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        let blob = self.object_name(name)?;
        self.delete_blob(&blob)
    }
}

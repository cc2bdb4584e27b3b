//! The `gs` backend: Google Cloud Storage over its JSON API (hyper + rustls), laid out like
//! Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx` in the bucket, with object metadata
//! `litestream-timestamp` (RFC 3339) holding the LTX timestamp, which listing returns at no
//! extra cost (spec §1.1, §1.2). `STORAGE_EMULATOR_HOST` points it at an emulator.
//!
//! Writer fencing uses generation preconditions: `ifGenerationMatch=0` creates the lease
//! object only if absent, `ifGenerationMatch=<generation>` replaces it only if unchanged. Both
//! ride on multipart uploads, which GCS and fake-gcs-server enforce them on.
//!
//! No request is made until the uploader or a restore asks for one; an idle replica makes none.

mod auth;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use self::auth::Signer;
use super::http::{self as h, HttpClient, Request, Response, Tuning};
use super::join_key as join;
use super::s3::{format_timestamp, parse_timestamp};
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::config::GsConfig;
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// Object metadata key of the LTX timestamp.
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";
/// Google's endpoint when no emulator is configured.
const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";
/// Files up to this size go up in one multipart upload from memory; larger ones in a resumable
/// upload of chunks this size (a multiple of the required 256 KiB), so memory stays bounded.
pub const CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// What a 401/403 most likely means, for the error message.
const AUTH_HINT: &str =
    "check GOOGLE_APPLICATION_CREDENTIALS (or the VM's service account) and its bucket permissions";

/// Why the replica cannot make requests (found at first use).
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Credentials(#[from] auth::CredentialsError),
    #[error(transparent)]
    Http(ReplicaError),
}

/// A Google Cloud Storage replica. Cheap to share; the HTTP client is built on first use.
pub struct GsReplica {
    cfg: GsConfig,
    /// `https://storage.googleapis.com` or `http://$STORAGE_EMULATOR_HOST`.
    endpoint: String,
    source: OnceLock<Result<Signer, SetupError>>,
    env: HashMap<&'static str, String>,
    tuning: Tuning,
}

#[derive(Deserialize)]
struct ObjectJson {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default, rename = "timeCreated")]
    time_created: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ListJson {
    #[serde(default)]
    items: Vec<ObjectJson>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// The environment variables the credential chain reads.
const ENV_VARS: [&str; 3] = [
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HOME",
];

impl GsReplica {
    /// A replica for `cfg`, configured from the process environment. Makes no request.
    pub fn new(cfg: &GsConfig) -> GsReplica {
        Self::with_env(cfg, &|k| std::env::var(k).ok(), Tuning::default())
    }

    pub fn with_env(
        cfg: &GsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        tuning: Tuning,
    ) -> GsReplica {
        let env: HashMap<&'static str, String> = ENV_VARS
            .iter()
            .filter_map(|k| env(k).filter(|v| !v.is_empty()).map(|v| (*k, v)))
            .collect();
        let endpoint = match env.get("STORAGE_EMULATOR_HOST") {
            Some(host) if host.contains("://") => host.trim_end_matches('/').to_string(),
            Some(host) => format!("http://{}", host.trim_end_matches('/')),
            None => GOOGLE_ENDPOINT.to_string(),
        };
        GsReplica {
            cfg: cfg.clone(),
            endpoint,
            source: OnceLock::new(),
            env,
            tuning,
        }
    }

    /// The signer (and its HTTP client), built on first use.
    fn signer(&self) -> Result<&Signer, ReplicaError> {
        let built = self.source.get_or_init(|| {
            let source = auth::resolve(&|k| self.env.get(k).cloned())?;
            let http = HttpClient::new("gs", self.tuning).map_err(SetupError::Http)?;
            tracing::info!(replica = %self.describe(), credentials = source.name(), "gs client ready");
            Ok(Signer::new(source, http))
        });
        built.as_ref().map_err(|e| ReplicaError::Fatal {
            key: self.describe(),
            reason: e.to_string(),
        })
    }

    /// `<path>/ltx/<level>` (Litestream's `LTXLevelDir`).
    pub fn level_dir(&self, level: u8) -> String {
        join(&self.cfg.path, &format!("ltx/{level}"))
    }

    /// The object name of one LTX file.
    pub fn object_name(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), format_file_name(min, max))
    }

    fn small_object_name(&self, name: &str) -> Result<String, ReplicaError> {
        super::small_object_key(&self.cfg.path, name)
    }

    fn shown(&self, object: &str) -> String {
        format!("gs://{}/{object}", self.cfg.bucket)
    }

    fn object_url(&self, object: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            h::encode(&self.cfg.bucket, false),
            h::encode(object, false)
        )
    }

    fn upload_url(&self, kind: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={kind}",
            self.endpoint,
            h::encode(&self.cfg.bucket, false)
        )
    }

    fn send(
        &self,
        kind: &'static str,
        object: &str,
        req: Request,
    ) -> Result<Response, ReplicaError> {
        let s = self.signer()?;
        s.http.send(kind, &self.shown(object), req, s)
    }

    fn error(&self, kind: &str, object: &str, resp: &Response) -> ReplicaError {
        h::unexpected(kind, &self.shown(object), resp, &detail(resp), AUTH_HINT)
    }

    #[cfg(test)]
    /// Creates the bucket (tests and emulators); an existing one is fine.
    pub fn create_bucket(&self) -> Result<(), ReplicaError> {
        let url = format!("{}/storage/v1/b", self.endpoint);
        let body = serde_json::json!({ "name": self.cfg.bucket }).to_string();
        let req = Request::new(Method::POST, url)
            .header("content-type", "application/json")
            .body(body);
        let resp = self.send("POST", "", req)?;
        match resp.status {
            s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            _ => Err(self.error("create bucket", "", &resp)),
        }
    }

    /// One multipart upload of `data` as `object`; returns the new generation.
    fn upload(
        &self,
        object: &str,
        data: &[u8],
        timestamp: Option<&str>,
        cond: &WriteCondition,
    ) -> Result<Response, ReplicaError> {
        let mut meta = serde_json::json!({
            "name": object,
            "contentType": "application/octet-stream",
        });
        if let Some(ts) = timestamp {
            meta["metadata"] = serde_json::json!({ TIMESTAMP_METADATA: ts });
        }
        let boundary = format!(
            "litestream-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n\
                 --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut url = self.upload_url("multipart");
        match cond {
            WriteCondition::Always => {}
            WriteCondition::IfAbsent => url.push_str("&ifGenerationMatch=0"),
            WriteCondition::IfMatch(g) => {
                url.push_str(&format!("&ifGenerationMatch={}", h::encode(g, false)))
            }
        }
        let req = Request::new(Method::POST, url)
            .header(
                "content-type",
                &format!("multipart/related; boundary={boundary}"),
            )
            .body(body);
        self.send("PUT", object, req)
    }

    /// A resumable upload of a large file in chunks of [`CHUNK_SIZE`].
    fn upload_resumable(
        &self,
        object: &str,
        src: &Path,
        size: u64,
        timestamp: &str,
    ) -> Result<(), ReplicaError> {
        let meta = serde_json::json!({
            "name": object,
            "contentType": "application/octet-stream",
            "metadata": { TIMESTAMP_METADATA: timestamp },
        });
        let req = Request::new(Method::POST, self.upload_url("resumable"))
            .header("content-type", "application/json; charset=UTF-8")
            .body(meta.to_string());
        let resp = self.send("PUT", object, req)?;
        let Some(session) = resp.header("location").map(str::to_string) else {
            return Err(self.error("start resumable upload", object, &resp));
        };
        let io = |e| ReplicaError::from_io(src.display().to_string(), e);
        let mut file = std::fs::File::open(src).map_err(io)?;
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut offset = 0u64;
        while offset < size {
            let n = read_full(&mut file, &mut buf).map_err(io)?;
            if n == 0 {
                return Err(ReplicaError::Fatal {
                    key: src.display().to_string(),
                    reason: "the file shrank while it was uploaded".to_string(),
                });
            }
            let last = offset + n as u64 >= size;
            let total = if last {
                size.to_string()
            } else {
                "*".to_string()
            };
            let range = format!("bytes {offset}-{}/{total}", offset + n as u64 - 1);
            let req = Request::new(Method::PUT, session.clone())
                .header("content-range", &range)
                .body(Bytes::copy_from_slice(&buf[..n]));
            let resp = self.send("PUT", object, req)?;
            let done = resp.status.is_success();
            let more = resp.status.as_u16() == 308;
            if !(done || (more && !last)) {
                return Err(self.error("resumable upload", object, &resp));
            }
            offset += n as u64;
        }
        Ok(())
    }

    fn delete_object_named(&self, object: &str) -> Result<(), ReplicaError> {
        let resp = self.send(
            "DELETE",
            object,
            Request::new(Method::DELETE, self.object_url(object)),
        )?;
        match resp.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.error("DELETE", object, &resp)),
        }
    }
}

/// The JSON API's error message, for error texts.
fn detail(resp: &Response) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    match v
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map(str::to_string)
    {
        Some(m) => format!(": {m}"),
        None => {
            let t = resp.body_text();
            let line = t.lines().next().unwrap_or_default().trim();
            if line.is_empty() {
                String::new()
            } else {
                format!(": {line}")
            }
        }
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

fn generation(resp: &Response) -> Option<String> {
    serde_json::from_slice::<ObjectJson>(&resp.body)
        .ok()
        .and_then(|o| o.generation)
}

impl ReplicaClient for GsReplica {
    fn kind(&self) -> &'static str {
        "gs"
    }

    fn describe(&self) -> String {
        let base = self.shown(&self.cfg.path);
        match self.env.get("STORAGE_EMULATOR_HOST") {
            Some(host) => format!("{base} (emulator {host})"),
            None => base,
        }
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&self.object_name(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let prefix = format!("{}/", self.level_dir(level));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&delimiter=%2F",
                self.endpoint,
                h::encode(&self.cfg.bucket, false),
                h::encode(&prefix, false)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", h::encode(t, false)));
            }
            let resp = self.send("LIST", &prefix, Request::new(Method::GET, url))?;
            if resp.status == StatusCode::NOT_FOUND {
                return Err(ReplicaError::Fatal {
                    key: self.shown(&prefix),
                    reason: format!(
                        "LIST: bucket {:?} does not exist{}: create it first",
                        self.cfg.bucket,
                        detail(&resp)
                    ),
                });
            }
            if !resp.status.is_success() {
                return Err(self.error("LIST", &prefix, &resp));
            }
            let page: ListJson =
                serde_json::from_slice(&resp.body).map_err(|e| ReplicaError::Fatal {
                    key: self.shown(&prefix),
                    reason: format!("LIST: the answer is not the expected JSON: {e}"),
                })?;
            for o in page.items {
                let Some(base) = o.name.strip_prefix(&prefix).filter(|b| !b.contains('/')) else {
                    continue;
                };
                let Some((min_txid, max_txid)) = parse_file_name(base) else {
                    continue;
                };
                let stamped = o
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get(TIMESTAMP_METADATA))
                    .and_then(|t| parse_timestamp(t));
                let created = o.time_created.as_deref().and_then(parse_timestamp);
                out.push(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: o.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                    created_at: stamped.or(created).unwrap_or(UNIX_EPOCH),
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let object = self.object_name(level, min, max);
        let s = self.signer()?;
        let shown = self.shown(&object);
        let req = Request::new(
            Method::GET,
            format!("{}?alt=media", self.object_url(&object)),
        );
        s.http
            .get_reader(shown, req, s, self.tuning.body_chunk_timeout, |resp| {
                self.error("GET", &object, resp)
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
        let object = self.object_name(level, min, max);
        let io = |e| ReplicaError::from_io(src.display().to_string(), e);
        let size = std::fs::metadata(src).map_err(io)?.len();
        let ts = format_timestamp(timestamp_ms);
        if size as usize > CHUNK_SIZE {
            self.upload_resumable(&object, src, size, &ts)?;
        } else {
            let data = std::fs::read(src).map_err(io)?;
            let resp = self.upload(&object, &data, Some(&ts), &WriteCondition::Always)?;
            if !resp.status.is_success() {
                return Err(self.error("PUT", &object, &resp));
            }
        }
        tracing::debug!(key = %self.shown(&object), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        for f in files {
            self.delete_object_named(&self.object_name(f.level, f.min_txid, f.max_txid))?;
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        let object = self.small_object_name(name)?;
        // The content with its generation (`x-goog-generation`); without that header, the
        // generation first and then exactly that generation's content.
        let media = format!("{}?alt=media", self.object_url(&object));
        let resp = self.send("GET", &object, Request::new(Method::GET, media))?;
        if resp.status != StatusCode::OK {
            return Err(self.error("GET", &object, &resp));
        }
        if let Some(gen) = resp.header("x-goog-generation") {
            return Ok(VersionedObject {
                version: gen.to_string(),
                data: resp.body.to_vec(),
            });
        }
        let resp = self.send(
            "GET",
            &object,
            Request::new(Method::GET, self.object_url(&object)),
        )?;
        if resp.status != StatusCode::OK {
            return Err(self.error("GET", &object, &resp));
        }
        let Some(gen) = generation(&resp) else {
            return Err(self.error("GET (no generation in the answer)", &object, &resp));
        };
        let url = format!(
            "{}?alt=media&generation={}",
            self.object_url(&object),
            h::encode(&gen, false)
        );
        let resp = self.send("GET", &object, Request::new(Method::GET, url))?;
        if resp.status != StatusCode::OK {
            return Err(self.error("GET", &object, &resp));
        }
        Ok(VersionedObject {
            data: resp.body.to_vec(),
            version: gen,
        })
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        let object = self.small_object_name(name)?;
        let resp = self.upload(&object, data, None, &cond)?;
        let key = self.shown(&object);
        match (resp.status, &cond) {
            (s, _) if s.is_success() => generation(&resp)
                .ok_or_else(|| self.error("PUT (no generation in the answer)", &object, &resp)),
            (StatusCode::PRECONDITION_FAILED, WriteCondition::IfAbsent) => {
                Err(ReplicaError::AlreadyExists { key })
            }
            (StatusCode::PRECONDITION_FAILED, WriteCondition::IfMatch(g)) => {
                Err(ReplicaError::Precondition {
                    key,
                    reason: format!("the object's generation is no longer {g}"),
                })
            }
            _ => Err(self.error("PUT", &object, &resp)),
        }
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        let object = self.small_object_name(name)?;
        self.delete_object_named(&object)
    }
}

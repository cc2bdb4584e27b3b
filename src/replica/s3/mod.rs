//! The `s3` backend: any S3-compatible store through aws-sdk-s3, laid out as
//! `<path>/<level as %04x>/<min>-<max>.ltx` with user metadata `litestream-timestamp`
//! (spec §1.1, §1.2).
//!
//! - [`runtime`]: the background tokio runtime every request runs on (callers block).
//! - [`sdk`]: configuration → SDK client (credentials order, endpoint, checksums, timeouts).
//! - [`multipart`]: large files; [`body`]: streaming downloads; [`error`]: error mapping.
//!
//! Nothing here runs on SQLite's commit path: the client is built lazily by the first request,
//! which comes from the uploader or a restore.

mod body_reader;
mod error_map;
mod insecure;
mod multipart;
mod request_counter;
pub mod runtime;
pub mod sdk;

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tokio::task::JoinSet;

use self::error_map::{map_runtime, map_sdk};
use self::sdk::{timeouts, Settings, Tuning};
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::ltx::{format_file_name, parse_file_name};
use crate::small_file::MAX_SMALL_FILE;
use crate::TxId;

/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;
/// HEAD requests in flight when reading `litestream-timestamp` for a `-timestamp` restore:
/// enough to hide round trips, few enough not to trip a store's rate limit.
const HEAD_CONCURRENCY: usize = 8;
/// User metadata key holding the LTX timestamp (sent as `x-amz-meta-litestream-timestamp`).
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";

/// An S3 replica. Cheap to share: the SDK client is found or built once, on first use.
pub struct S3Replica {
    settings: Settings,
    tuning: Tuning,
    client: OnceLock<aws_sdk_s3::Client>,
}

impl std::fmt::Debug for S3Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Replica")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// `ms` since the epoch in RFC 3339 with milliseconds, UTC (`2026-11-22T18:18:07.815Z`).
pub fn format_timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses the `litestream-timestamp` metadata (any RFC 3339 form).
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    let d = std::time::Duration::from_nanos(nanos.unsigned_abs().try_into().ok()?);
    Some(if nanos >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    })
}

fn system_time(dt: &aws_sdk_s3::primitives::DateTime) -> SystemTime {
    SystemTime::try_from(*dt).unwrap_or(UNIX_EPOCH)
}

impl S3Replica {
    /// A replica for `cfg`, resolved against the process environment. Makes no request.
    pub fn new(cfg: &crate::config::S3Config) -> S3Replica {
        Self::with_tuning(
            Settings::resolve(cfg, &|k| std::env::var(k).ok()),
            Tuning::default(),
        )
    }

    pub fn with_tuning(settings: Settings, tuning: Tuning) -> S3Replica {
        S3Replica {
            settings,
            tuning,
            client: OnceLock::new(),
        }
    }

    /// The SDK client, found or built on the runtime by the first caller (shared with every
    /// replica on the same store with the same credentials, see [`sdk::shared_client`]).
    fn client(&self) -> Result<aws_sdk_s3::Client, ReplicaError> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let (s, t) = (self.settings.clone(), self.tuning);
        let built = runtime::block_on(async move { sdk::shared_client(&s, &t).await })
            .map_err(|e| map_runtime(self.describe(), e))?;
        tracing::info!(replica = %self.describe(), credentials = self.settings.credentials.name(), "s3 client ready");
        Ok(self.client.get_or_init(|| built).clone())
    }

    /// `<prefix>/<level %04x>/`.
    pub fn level_prefix(&self, level: u8) -> String {
        format!("{}/{level:04x}/", self.settings.prefix)
    }

    /// The object key of one LTX file.
    pub fn object_key(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), format_file_name(min, max))
    }

    /// The key of a small object stored at the replica root.
    fn small_object_key(&self, name: &str) -> Result<String, ReplicaError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ReplicaError::Fatal {
                key: name.to_string(),
                reason: "object names must be plain file names".to_string(),
            });
        }
        Ok(format!("{}/{name}", self.settings.prefix))
    }

    fn shown(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    /// Runs `f(client)` on the runtime and maps a runtime failure for `key`.
    fn run<F, Fut, T>(&self, key: &str, f: F) -> Result<T, ReplicaError>
    where
        F: FnOnce(aws_sdk_s3::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ReplicaError>> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.client()?;
        runtime::block_on(f(client)).map_err(|e| map_runtime(self.shown(key), e))?
    }

    #[cfg(test)]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Creates the bucket (tests against an emulator).
    #[cfg(test)]
    pub fn create_bucket(&self) -> Result<(), ReplicaError> {
        let bucket = self.settings.bucket.clone();
        let shown = format!("s3://{bucket}");
        self.run("", move |c| async move {
            match c.create_bucket().bucket(&bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let f = error_map::Failure::from_sdk(&e);
                    if matches!(
                        f.code.as_deref(),
                        Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                    ) {
                        Ok(())
                    } else {
                        Err(error_map::classify("CreateBucket", shown, &f))
                    }
                }
            }
        })
    }
}

impl ReplicaClient for S3Replica {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        let s = &self.settings;
        let mut out = format!("s3://{}/{}", s.bucket, s.prefix);
        if let Some(e) = &s.endpoint {
            out.push_str(&format!("?endpoint={}", crate::config::redact_url(e)));
        }
        out
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&self.object_key(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let prefix = self.level_prefix(level);
        let bucket = self.settings.bucket.clone();
        let shown = self.shown(&prefix);
        let t = self.tuning;
        let p2 = prefix.clone();
        self.run(&p2, move |c| async move {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            // A store that hands back a token it gave before would make this loop forever.
            let mut seen = std::collections::HashSet::new();
            loop {
                let resp = c
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&prefix)
                    .delimiter("/")
                    .set_continuation_token(token.take())
                    .customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)),
                    )
                    .send()
                    .await
                    .map_err(|e| map_sdk("LIST", shown.clone(), &e))?;
                for obj in resp.contents() {
                    let Some(name) = obj.key().and_then(|k| k.strip_prefix(prefix.as_str())) else {
                        continue;
                    };
                    let Some((min_txid, max_txid)) = parse_file_name(name) else {
                        continue;
                    };
                    out.push(LtxFileInfo {
                        level,
                        min_txid,
                        max_txid,
                        size: obj.size().unwrap_or(0).max(0) as u64,
                        created_at: obj.last_modified().map(system_time).unwrap_or(UNIX_EPOCH),
                    });
                }
                match resp.next_continuation_token() {
                    Some(t) if resp.is_truncated() == Some(true) => {
                        if !seen.insert(t.to_string()) {
                            return Err(ReplicaError::Fatal {
                                key: shown.clone(),
                                reason: format!(
                                    "the store returned continuation token {t:?} twice: its \
                                     listing does not advance (a bug of the S3-compatible server)"
                                ),
                            });
                        }
                        token = Some(t.to_string());
                    }
                    _ => break,
                }
            }
            out.sort_by_key(|f| (f.min_txid, f.max_txid));
            Ok(out)
        })
    }

    fn resolve_timestamps(&self, files: &mut [LtxFileInfo]) -> Result<(), ReplicaError> {
        let keys: Vec<String> = files
            .iter()
            .map(|f| self.object_key(f.level, f.min_txid, f.max_txid))
            .collect();
        let bucket = self.settings.bucket.clone();
        let this_bucket = bucket.clone();
        let t = self.tuning;
        let times = self.run("", move |c| async move {
            let mut times: Vec<Option<SystemTime>> = vec![None; keys.len()];
            let mut tasks = JoinSet::new();
            let mut next = 0;
            loop {
                while next < keys.len() && tasks.len() < HEAD_CONCURRENCY {
                    let (c, bucket, key, i) = (c.clone(), bucket.clone(), keys[next].clone(), next);
                    tasks.spawn(async move {
                        let r = c
                            .head_object()
                            .bucket(&bucket)
                            .key(&key)
                            .customize()
                            .config_override(
                                aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)),
                            )
                            .send()
                            .await
                            .map_err(|e| map_sdk("HEAD", format!("s3://{bucket}/{key}"), &e))?;
                        let ts = r
                            .metadata()
                            .and_then(|m| m.get(TIMESTAMP_METADATA))
                            .and_then(|v| parse_timestamp(v));
                        Ok::<_, ReplicaError>((i, ts))
                    });
                    next += 1;
                }
                let Some(joined) = tasks.join_next().await else {
                    break;
                };
                let (i, ts) = joined.map_err(|e| ReplicaError::Fatal {
                    key: format!("s3://{this_bucket}"),
                    reason: format!("HEAD task failed: {e}"),
                })??;
                times[i] = ts;
            }
            Ok(times)
        })?;
        for (f, t) in files.iter_mut().zip(times) {
            if let Some(t) = t {
                f.created_at = t;
            }
        }
        Ok(())
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let key = self.object_key(level, min, max);
        let shown = self.shown(&key);
        let bucket = self.settings.bucket.clone();
        let t = self.tuning;
        let s2 = shown.clone();
        let k2 = key.clone();
        let body = self.run(&k2, move |c| async move {
            let out = c
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .customize()
                .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)))
                .send()
                .await
                .map_err(|e| map_sdk("GET", s2, &e))?;
            Ok(out.body)
        })?;
        Ok(Box::new(body_reader::BodyReader::new(
            body,
            shown,
            self.tuning.body_chunk_timeout,
        )))
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        let key = self.object_key(level, min, max);
        let size = std::fs::metadata(src)
            .map_err(|e| ReplicaError::from_io(src.display().to_string(), e))?
            .len();
        let s = &self.settings;
        let timestamp = format_timestamp(timestamp_ms);
        if size > s.part_size {
            let upload = multipart::Upload {
                client: self.client()?,
                bucket: s.bucket.clone(),
                key: key.clone(),
                src: src.to_path_buf(),
                size,
                part_size: s.part_size,
                concurrency: s.concurrency,
                timestamp,
                sign_payload: s.sign_payload,
                tuning: self.tuning,
            };
            runtime::block_on(multipart::upload(upload))
                .map_err(|e| map_runtime(self.shown(&key), e))??;
        } else {
            // Small enough to send from memory: the SDK signs it and can replay it on retry.
            let data = std::fs::read(src)
                .map_err(|e| ReplicaError::from_io(src.display().to_string(), e))?;
            let (bucket, sign, t, shown) = (
                s.bucket.clone(),
                s.sign_payload,
                self.tuning,
                self.shown(&key),
            );
            let k = key.clone();
            self.run(&key, move |c| async move {
                let mut op = c
                    .put_object()
                    .bucket(&bucket)
                    .key(&k)
                    .content_type("application/octet-stream")
                    .content_length(data.len() as i64)
                    .metadata(TIMESTAMP_METADATA, &timestamp)
                    .body(ByteStream::from(data))
                    .customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, size)),
                    );
                if !sign {
                    op = op.disable_payload_signing();
                }
                op.send()
                    .await
                    .map_err(|e| map_sdk("PUT", shown, &e))
                    .map(|_| ())
            })?;
        }
        tracing::debug!(key = %self.shown(&key), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        let keys: Vec<String> = files
            .iter()
            .map(|f| self.object_key(f.level, f.min_txid, f.max_txid))
            .collect();
        for batch in keys.chunks(DELETE_BATCH) {
            let ids = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ReplicaError::Fatal {
                    key: self.shown(&batch[0]),
                    reason: e.to_string(),
                })?;
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| ReplicaError::Fatal {
                    key: self.shown(&batch[0]),
                    reason: e.to_string(),
                })?;
            let bucket = self.settings.bucket.clone();
            let shown = self.shown(&batch[0]);
            let t = self.tuning;
            self.run(&batch[0], move |c| async move {
                let out = c
                    .delete_objects()
                    .bucket(&bucket)
                    .delete(delete)
                    .customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)),
                    )
                    .send()
                    .await
                    .map_err(|e| map_sdk("DeleteObjects", shown, &e))?;
                match out.errors().iter().find(|e| e.code() != Some("NoSuchKey")) {
                    Some(e) => Err(error_map::classify(
                        "DELETE",
                        format!("s3://{bucket}/{}", e.key().unwrap_or_default()),
                        &error_map::Failure {
                            status: None,
                            code: e.code().map(str::to_string),
                            message: e.message().unwrap_or_default().to_string(),
                            transport: false,
                            construction: false,
                        },
                    )),
                    None => Ok(()),
                }
            })?;
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        let key = self.small_object_key(name)?;
        let (bucket, t, shown) = (self.settings.bucket.clone(), self.tuning, self.shown(&key));
        let k = key.clone();
        self.run(&key, move |c| async move {
            let out = c
                .get_object()
                .bucket(&bucket)
                .key(&k)
                .customize()
                .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)))
                .send()
                .await
                .map_err(|e| map_sdk("GET", shown.clone(), &e))?;
            let version = out.e_tag().unwrap_or_default().to_string();
            let too_large = || ReplicaError::Fatal {
                key: shown.clone(),
                reason: crate::small_file::too_large("the object", MAX_SMALL_FILE).to_string(),
            };
            if out.content_length().unwrap_or(0) as u64 > MAX_SMALL_FILE {
                return Err(too_large());
            }
            // Chunk by chunk, never holding more than the bound (whatever the length claimed).
            let mut body = out.body;
            let mut data = Vec::new();
            let collect = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| ReplicaError::Transient {
                        key: shown.clone(),
                        reason: format!("GET body: {e}"),
                    })?;
                    if (data.len() + chunk.len()) as u64 > MAX_SMALL_FILE {
                        return Err(too_large());
                    }
                    data.extend_from_slice(&chunk);
                }
                Ok(())
            };
            tokio::time::timeout(t.attempt_timeout, collect)
                .await
                .map_err(|_| ReplicaError::Transient {
                    key: shown.clone(),
                    reason: "GET body timed out".to_string(),
                })??;
            Ok(VersionedObject { data, version })
        })
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        let key = self.small_object_key(name)?;
        let s = &self.settings;
        let (bucket, t, shown, sign) = (
            s.bucket.clone(),
            self.tuning,
            self.shown(&key),
            s.sign_payload,
        );
        let data = data.to_vec();
        let k = key.clone();
        self.run(&key, move |c| async move {
            let len = data.len() as u64;
            let mut req = c
                .put_object()
                .bucket(&bucket)
                .key(&k)
                .content_type("application/octet-stream")
                .content_length(len as i64)
                .body(ByteStream::from(data));
            req = match &cond {
                WriteCondition::Always => req,
                WriteCondition::IfAbsent => req.if_none_match("*"),
                WriteCondition::IfMatch(tag) => req.if_match(tag),
            };
            let mut op = req.customize().config_override(
                aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, len)),
            );
            if !sign {
                op = op.disable_payload_signing();
            }
            match op.send().await {
                Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
                Err(e) => match (map_sdk("PUT", shown.clone(), &e), &cond) {
                    (ReplicaError::Precondition { .. }, WriteCondition::IfAbsent) => {
                        Err(ReplicaError::AlreadyExists { key: shown })
                    }
                    (err, _) => Err(err),
                },
            }
        })
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        let key = self.small_object_key(name)?;
        let (bucket, t, shown) = (self.settings.bucket.clone(), self.tuning, self.shown(&key));
        let k = key.clone();
        self.run(&key, move |c| async move {
            match c
                .delete_object()
                .bucket(&bucket)
                .key(&k)
                .customize()
                .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&t, 0)))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match map_sdk("DELETE", shown, &e) {
                    ReplicaError::NotFound { .. } => Ok(()),
                    err => Err(err),
                },
            }
        })
    }
}

//! The `nats` backend: a NATS JetStream object store bucket (async-nats, rustls on ring),
//! laid out like Litestream 0.5: objects `ltx/<level>/<min>-<max>.ltx` at the bucket root, with
//! the object header `Litestream-Timestamp` (RFC 3339) holding the LTX timestamp. The bucket must
//! exist (the official binary does not create it either).
//!
//! The connection is opened by the first request, on the S3 runtime thread (async-nats spawns
//! its connection task there), and kept; an idle replica sends no JetStream request, only the
//! connection's keep-alive PING every [`PING_INTERVAL`].
//!
//! Writer fencing uses JetStream's own compare-and-set on the object's metadata subject
//! (`Nats-Expected-Last-Subject-Sequence`), see [`lease`].

mod kv_objects;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::async_read::BlockingReader;
use super::s3::{format_timestamp, parse_timestamp, runtime};
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::config::NatsConfig;
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// Object header holding the LTX timestamp (the official binary's `HeaderKeyTimestamp`).
pub const TIMESTAMP_HEADER: &str = "Litestream-Timestamp";
/// Connecting (TCP, TLS, CONNECT): a healthy server answers in milliseconds; 10 s is the
/// official client's timeout too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One JetStream request (LIST, info, publish ack): the server answers in milliseconds; a
/// stalled one is given up and retried by the uploader.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive PING of an idle connection: the official client's 2 minutes.
pub const PING_INTERVAL: Duration = Duration::from_secs(120);
/// Longest wait for the next chunk of a downloaded object.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection to the bucket.
#[derive(Clone)]
struct Conn {
    js: jetstream::Context,
    store: ObjectStore,
    /// The bucket's stream (`OBJ_<bucket>`), for the lease's conditional writes.
    stream: Stream,
}

/// A NATS object store replica. Cheap to share; connects on first use.
pub struct NatsReplica {
    cfg: NatsConfig,
    conn: Mutex<Option<Conn>>,
}

impl NatsReplica {
    /// A replica for `cfg`. Makes no connection.
    pub fn new(cfg: &NatsConfig) -> NatsReplica {
        NatsReplica {
            cfg: cfg.clone(),
            conn: Mutex::new(None),
        }
    }

    fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.describe())
    }

    fn transient(&self, name: &str, reason: impl std::fmt::Display) -> ReplicaError {
        ReplicaError::Transient {
            key: self.shown(name),
            reason: reason.to_string(),
        }
    }

    /// Runs `fut` on the runtime with [`REQUEST_TIMEOUT`].
    fn run<T: Send + 'static>(
        &self,
        name: &str,
        fut: impl std::future::Future<Output = Result<T, ReplicaError>> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        match runtime::block_on(async move { tokio::time::timeout(REQUEST_TIMEOUT, fut).await }) {
            Err(e) => Err(self.transient(name, e)),
            Ok(Err(_)) => Err(self.transient(
                name,
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            )),
            Ok(Ok(r)) => r,
        }
    }

    /// The connection, opened by the first caller.
    fn conn(&self) -> Result<Conn, ReplicaError> {
        let mut guard = self.conn.lock();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = self.cfg.clone();
        let shown = self.describe();
        let conn = self.run("", async move { connect(&cfg, &shown).await })?;
        tracing::info!(replica = %self.describe(), "nats connection ready");
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// `ltx/<level>` (Litestream's `LTXLevelDir` with an empty path).
    pub fn level_dir(level: u8) -> String {
        format!("ltx/{level}")
    }

    /// The object name of one LTX file.
    pub fn object_name(level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", Self::level_dir(level), format_file_name(min, max))
    }

    #[cfg(test)]
    /// Creates the bucket (tests and first-time setup); an existing one is fine.
    pub fn create_bucket(&self) -> Result<(), ReplicaError> {
        let cfg = self.cfg.clone();
        let shown = self.describe();
        self.run("", async move {
            let client = connect_options(&cfg, &shown)
                .await?
                .connect(cfg.url.as_str())
                .await
                .map_err(|e| transient_err(&shown, format!("cannot connect: {e}")))?;
            let js = jetstream::new(client);
            js.create_object_store(jetstream::object_store::Config {
                bucket: cfg.bucket.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| transient_err(&shown, format!("cannot create the bucket: {e}")))?;
            Ok(())
        })
    }
}

fn transient_err(key: &str, reason: String) -> ReplicaError {
    ReplicaError::Transient {
        key: key.to_string(),
        reason,
    }
}

/// The options for `cfg`'s credentials and TLS, in the official client's order: `jwt` + `seed`,
/// `creds`, `nkey`, `username` + `password`, `token`.
async fn connect_options(
    cfg: &NatsConfig,
    shown: &str,
) -> Result<async_nats::ConnectOptions, ReplicaError> {
    let fatal = |reason: String| ReplicaError::Fatal {
        key: shown.to_string(),
        reason,
    };
    let mut o = async_nats::ConnectOptions::new()
        .name("litestream")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .ping_interval(PING_INTERVAL);
    o = match cfg {
        NatsConfig {
            jwt: Some(jwt),
            seed: Some(seed),
            ..
        } => {
            let creds = format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            );
            o.credentials(&creds)
                .map_err(|e| fatal(format!("`jwt` / `seed` are not usable: {e}")))?
        }
        NatsConfig {
            creds: Some(path), ..
        } => o
            .credentials_file(path)
            .await
            .map_err(|e| fatal(format!("credentials file {path}: {e}")))?,
        NatsConfig {
            nkey: Some(seed), ..
        } => o.nkey(seed.clone()),
        NatsConfig {
            username: Some(u),
            password: Some(p),
            ..
        } => o.user_and_password(u.clone(), p.clone()),
        NatsConfig { token: Some(t), .. } => o.token(t.clone()),
        _ => o,
    };
    if cfg.tls {
        o = o.require_tls(true);
    }
    for ca in &cfg.root_cas {
        o = o.add_root_certificates(ca.into());
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        o = o.add_client_certificate(cert.into(), key.into());
    }
    Ok(o)
}

async fn connect(cfg: &NatsConfig, shown: &str) -> Result<Conn, ReplicaError> {
    let client = connect_options(cfg, shown)
        .await?
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| {
            let reason = format!("cannot connect: {e}");
            if reason.contains("authorization") || reason.contains("authentication") {
                ReplicaError::Fatal {
                    key: shown.to_string(),
                    reason: format!(
                        "{reason}; check the credentials (username/password, token, creds, nkey)"
                    ),
                }
            } else {
                transient_err(shown, reason)
            }
        })?;
    let js = jetstream::new(client);
    let store = js.get_object_store(&cfg.bucket).await.map_err(|e| {
        let reason = format!(
            "object store bucket {:?} is not usable: {e}; create it first (nats object add {})",
            cfg.bucket, cfg.bucket
        );
        if e.to_string().contains("not found") {
            ReplicaError::Fatal {
                key: shown.to_string(),
                reason,
            }
        } else {
            transient_err(shown, reason)
        }
    })?;
    let stream = js
        .get_stream(format!("OBJ_{}", cfg.bucket))
        .await
        .map_err(|e| transient_err(shown, format!("bucket stream: {e}")))?;
    Ok(Conn { js, store, stream })
}

impl ReplicaClient for NatsReplica {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn describe(&self) -> String {
        crate::config::Backend::Nats(self.cfg.clone()).url()
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&Self::object_name(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let conn = self.conn()?;
        let prefix = format!("{}/", Self::level_dir(level));
        let shown = self.shown(&prefix);
        crate::metrics::record_request("nats", "LIST");
        let p2 = prefix.clone();
        let infos = self.run(&p2, async move {
            let mut list = conn
                .store
                .list()
                .await
                .map_err(|e| transient_err(&shown, format!("LIST: {e}")))?;
            let mut out = Vec::new();
            while let Some(info) = list.next().await {
                let info = info.map_err(|e| transient_err(&shown, format!("LIST: {e}")))?;
                if !info.deleted && info.name.starts_with(&prefix) {
                    out.push(info);
                }
            }
            Ok((out, prefix))
        })?;
        let (infos, prefix) = infos;
        let mut files: Vec<LtxFileInfo> = infos
            .into_iter()
            .filter_map(|info| {
                let base = info.name.strip_prefix(&prefix)?;
                let (min_txid, max_txid) = parse_file_name(base)?;
                let stamped = info
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(TIMESTAMP_HEADER))
                    .and_then(|v| parse_timestamp(v.as_str()));
                let modified = info.modified.map(|m| {
                    UNIX_EPOCH + Duration::from_nanos(m.unix_timestamp_nanos().max(0) as u64)
                });
                Some(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: info.size as u64,
                    created_at: stamped.or(modified).unwrap_or(UNIX_EPOCH),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let conn = self.conn()?;
        let name = Self::object_name(level, min, max);
        let shown = self.shown(&name);
        crate::metrics::record_request("nats", "GET");
        let s2 = shown.clone();
        let n2 = name.clone();
        let object = self.run(&name, async move {
            conn.store.get(&n2).await.map_err(|e| {
                use async_nats::jetstream::object_store::GetErrorKind;
                match e.kind() {
                    GetErrorKind::NotFound => ReplicaError::NotFound { key: s2 },
                    _ => transient_err(&s2, format!("GET: {e}")),
                }
            })
        })?;
        Ok(Box::new(BlockingReader::new(object, shown, CHUNK_TIMEOUT)))
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        let conn = self.conn()?;
        let name = Self::object_name(level, min, max);
        let shown = self.shown(&name);
        let src_shown = src.display().to_string();
        let src = src.to_path_buf();
        let ts = format_timestamp(timestamp_ms);
        crate::metrics::record_request("nats", "PUT");
        let n2 = name.clone();
        let size = self.run(&name, async move {
            let mut file = tokio::fs::File::open(&src)
                .await
                .map_err(|e| ReplicaError::from_io(src_shown, e))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(TIMESTAMP_HEADER, ts.as_str());
            let meta = ObjectMetadata {
                name: n2,
                headers: Some(headers),
                ..Default::default()
            };
            let info = conn
                .store
                .put(meta, &mut file)
                .await
                .map_err(|e| transient_err(&shown, format!("PUT: {e}")))?;
            Ok(info.size)
        })?;
        tracing::debug!(key = %self.shown(&name), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        if files.is_empty() {
            return Ok(());
        }
        let conn = self.conn()?;
        for f in files {
            let name = Self::object_name(f.level, f.min_txid, f.max_txid);
            self.delete_named(&conn, name)?;
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        kv_objects::check_name(name)?;
        let conn = self.conn()?;
        kv_objects::read(self, &conn, name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        kv_objects::check_name(name)?;
        let conn = self.conn()?;
        kv_objects::write(self, &conn, name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        kv_objects::check_name(name)?;
        let conn = self.conn()?;
        self.delete_named(&conn, name.to_string())
    }
}

impl NatsReplica {
    fn delete_named(&self, conn: &Conn, name: String) -> Result<(), ReplicaError> {
        let store = conn.store.clone();
        let shown = self.shown(&name);
        crate::metrics::record_request("nats", "DELETE");
        let n2 = name.clone();
        self.run(&name, async move {
            use async_nats::jetstream::object_store::DeleteErrorKind;
            match store.delete(&n2).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
                Err(e) => Err(transient_err(&shown, format!("DELETE: {e}"))),
            }
        })
    }
}

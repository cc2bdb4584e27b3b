//! The `sftp` backend (russh + russh-sftp, pure Rust on ring), laid out like Litestream 0.5:
//! files `<path>/ltx/<level>/<min>-<max>.ltx` whose modification time is the LTX timestamp.
//!
//! SFTP (version 3, what OpenSSH speaks) carries times in whole seconds, so listed times are
//! the timestamp rounded down to the second, as the official binary sees them too;
//! [`ReplicaClient::resolve_timestamps`] reads the exact millisecond from each file's LTX header
//! for `-timestamp` restores. Uploads go to a temporary name in the level directory, get their
//! time set, and are renamed into place, so readers never see a partial file.
//!
//! The connection is opened by the first request, on the shared runtime thread, and kept: an
//! idle replica sends nothing. A call that fails on a broken connection drops it and is tried
//! once more on a new one. Writer fencing: [`lock_dir`].

mod connect;
mod lock_dir;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::async_read::BlockingReader;
use super::s3::runtime;
use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::config::SftpConfig;
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// Longest a whole call (connect included) may take before it is given up as transient.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of an LTX header needed for its timestamp (magic, flags, …, timestamp at 32..40).
const HEADER_TIMESTAMP_END: usize = 40;

/// An SFTP replica. Cheap to share; connects on first use.
pub(crate) struct SftpReplica {
    cfg: SftpConfig,
    conn: Mutex<Option<Arc<connect::Conn>>>,
}

/// What a call on the session failed with.
enum CallError {
    Sftp(SftpError),
    Replica(ReplicaError),
}

impl From<SftpError> for CallError {
    fn from(e: SftpError) -> Self {
        CallError::Sftp(e)
    }
}

impl From<ReplicaError> for CallError {
    fn from(e: ReplicaError) -> Self {
        CallError::Replica(e)
    }
}

fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// The connection is unusable (closed channel, timeout): drop it and reconnect.
fn is_broken(e: &SftpError) -> bool {
    matches!(
        e,
        SftpError::IO(_) | SftpError::Timeout | SftpError::UnexpectedBehavior(_)
    )
}

type CallResult<T> = Result<T, CallError>;

impl SftpReplica {
    /// A replica for `cfg`. Makes no connection.
    pub(crate) fn new(cfg: &SftpConfig) -> SftpReplica {
        SftpReplica {
            cfg: cfg.clone(),
            conn: Mutex::new(None),
        }
    }

    /// `<path>/<rest>` (Litestream joins with `path.Join`).
    fn remote(&self, rest: &str) -> String {
        if self.cfg.path == "." {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.cfg.path)
        }
    }

    fn level_dir(&self, level: u8) -> String {
        self.remote(&format!("ltx/{level}"))
    }

    fn file_path(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), format_file_name(min, max))
    }

    fn shown(&self, remote: &str) -> String {
        let base = crate::config::Backend::Sftp(SftpConfig {
            path: String::new(),
            ..self.cfg.clone()
        })
        .url();
        let base = base.trim_end_matches("/~/");
        if remote.starts_with('/') {
            format!("{base}{remote}")
        } else {
            format!("{base}/~/{remote}")
        }
    }

    fn map_err(&self, remote: &str, what: &str, e: SftpError) -> ReplicaError {
        let key = self.shown(remote);
        match &e {
            SftpError::Status(s) => match s.status_code {
                StatusCode::NoSuchFile => ReplicaError::NotFound { key },
                StatusCode::PermissionDenied => ReplicaError::Fatal {
                    key,
                    reason: format!(
                        "{what}: permission denied; check that user {:?} may write `path`",
                        self.cfg.user
                    ),
                },
                _ => ReplicaError::Transient {
                    key,
                    reason: format!("{what}: {e}"),
                },
            },
            _ => ReplicaError::Transient {
                key,
                reason: format!("{what}: {e}"),
            },
        }
    }

    /// The open connection, made by the first caller.
    fn conn(&self) -> Result<Arc<connect::Conn>, ReplicaError> {
        let mut guard = self.conn.lock();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = self.cfg.clone();
        let shown = self.shown(&self.cfg.path);
        let conn = self.block(&self.cfg.path, async move {
            match tokio::time::timeout(connect::CONNECT_TIMEOUT, connect::open(&cfg, &shown)).await
            {
                Ok(r) => r,
                Err(_) => Err(ReplicaError::Transient {
                    key: shown,
                    reason: format!(
                        "no connection within {} s",
                        connect::CONNECT_TIMEOUT.as_secs()
                    ),
                }),
            }
        })?;
        tracing::info!(replica = %self.shown(&self.cfg.path), "sftp connection ready");
        let conn = Arc::new(conn);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    fn block<T: Send + 'static>(
        &self,
        remote: &str,
        fut: impl Future<Output = Result<T, ReplicaError>> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        runtime::block_on(fut).map_err(|e| ReplicaError::Transient {
            key: self.shown(remote),
            reason: e.to_string(),
        })?
    }

    /// Runs `f` on the session; a broken connection is dropped and `f` tried once more.
    fn call<T, F, Fut>(&self, what: &str, remote: &str, f: F) -> Result<T, ReplicaError>
    where
        T: Send + 'static,
        F: Fn(Arc<connect::Conn>) -> Fut,
        Fut: Future<Output = CallResult<T>> + Send + 'static,
    {
        crate::metrics::record_request("sftp", what);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.conn()?;
            let fut = f(conn.clone());
            let r = runtime::block_on(async move { tokio::time::timeout(CALL_TIMEOUT, fut).await })
                .map_err(|e| ReplicaError::Transient {
                    key: self.shown(remote),
                    reason: e.to_string(),
                })?;
            let err = match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(CallError::Replica(e))) => return Err(e),
                Ok(Err(CallError::Sftp(e))) => e,
                Err(_) => SftpError::Timeout,
            };
            if !is_broken(&err) {
                return Err(self.map_err(remote, what, err));
            }
            self.drop_conn(&conn);
            if attempt >= 2 {
                return Err(self.map_err(remote, what, err));
            }
            tracing::debug!(replica = %self.shown(remote), error = %err, "sftp connection lost; reconnecting");
        }
    }

    fn drop_conn(&self, conn: &Arc<connect::Conn>) {
        let mut guard = self.conn.lock();
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *guard = None;
        }
    }

    #[cfg(test)]
    /// Writes raw bytes at `<path>/<rel>` (tests plant foreign names).
    fn write_raw(&self, rel: &str, data: &[u8]) {
        let remote = self.remote(rel);
        let data = data.to_vec();
        self.call("PUT", &remote.clone(), move |c| {
            let (remote, data) = (remote.clone(), data.clone());
            async move {
                mkdir_all(&c.sftp, parent(&remote)).await?;
                let mut f = c.sftp.create(remote).await?;
                f.write_all(&data).await.map_err(SftpError::from)?;
                f.shutdown().await.map_err(SftpError::from)?;
                Ok(())
            }
        })
        .expect("write_raw");
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// `mkdir -p`: creates each missing directory of `dir` top-down.
async fn mkdir_all(sftp: &SftpSession, dir: &str) -> Result<(), SftpError> {
    if dir.is_empty() || dir == "." || dir == "/" {
        return Ok(());
    }
    if sftp.metadata(dir).await.is_ok() {
        return Ok(());
    }
    Box::pin(mkdir_all(sftp, parent(dir))).await?;
    match sftp.create_dir(dir).await {
        Ok(()) => Ok(()),
        // Made by someone else meanwhile.
        Err(_) if sftp.metadata(dir).await.is_ok() => Ok(()),
        Err(e) => Err(e),
    }
}

fn secs(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32
}

/// Copies the local file `src` to the new remote file `tmp`, sets its times to `ts_ms` and
/// renames it to `dst` (replacing an earlier upload of the same name, which holds the same
/// content: a retried upload).
async fn upload(
    sftp: &SftpSession,
    src: &Path,
    tmp: &str,
    dst: &str,
    ts_ms: i64,
) -> CallResult<u64> {
    let mut local = tokio::fs::File::open(src)
        .await
        .map_err(|e| ReplicaError::from_io(src.display().to_string(), e))?;
    let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
    let mut f = match sftp.open_with_flags(tmp, flags).await {
        Err(e) if is_missing(&e) => {
            mkdir_all(sftp, parent(tmp)).await?;
            sftp.open_with_flags(tmp, flags).await?
        }
        r => r?,
    };
    let n = tokio::io::copy(&mut local, &mut f)
        .await
        .map_err(SftpError::from)?;
    f.shutdown().await.map_err(SftpError::from)?;
    let t = secs(ts_ms);
    sftp.set_metadata(
        tmp,
        FileAttributes {
            atime: Some(t),
            mtime: Some(t),
            ..FileAttributes::empty()
        },
    )
    .await?;
    if sftp.rename(tmp, dst).await.is_err() {
        // SFTP v3 rename refuses to replace an existing file (OpenSSH): drop the earlier copy.
        match sftp.remove_file(dst).await {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
        sftp.rename(tmp, dst).await?;
    }
    Ok(n)
}

impl ReplicaClient for SftpReplica {
    fn kind(&self) -> &'static str {
        "sftp"
    }

    fn describe(&self) -> String {
        self.shown(&self.cfg.path)
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.shown(&self.file_path(level, min, max))
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let dir = self.level_dir(level);
        let d2 = dir.clone();
        let entries = match self.call("LIST", &dir, move |c| {
            let dir = d2.clone();
            async move {
                let rd = c.sftp.read_dir(dir).await?;
                Ok(rd
                    .map(|e| (e.file_name(), e.metadata()))
                    .collect::<Vec<_>>())
            }
        }) {
            Ok(v) => v,
            Err(ReplicaError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files: Vec<LtxFileInfo> = entries
            .into_iter()
            .filter(|(_, m)| m.is_regular())
            .filter_map(|(name, m)| {
                let (min_txid, max_txid) = parse_file_name(&name)?;
                Some(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: m.size.unwrap_or(0),
                    created_at: UNIX_EPOCH + Duration::from_secs(m.mtime.unwrap_or(0) as u64),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        let path = self.file_path(level, min, max);
        let p2 = path.clone();
        let file = self.call("GET", &path, move |c| {
            let path = p2.clone();
            async move { Ok(c.sftp.open(path).await?) }
        })?;
        Ok(Box::new(BlockingReader::new(
            file,
            self.shown(&path),
            CALL_TIMEOUT,
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
        let dst = self.file_path(level, min, max);
        let (d2, src) = (dst.clone(), src.to_path_buf());
        let size = self.call("PUT", &dst, move |c| {
            let (dst, src) = (d2.clone(), src.clone());
            let tmp = format!(
                "{}/.{}.tmp-{:016x}",
                parent(&dst),
                format_file_name(min, max),
                fastrand::u64(..)
            );
            async move {
                let r = upload(&c.sftp, &src, &tmp, &dst, timestamp_ms).await;
                if r.is_err() {
                    let _ = c.sftp.remove_file(tmp).await;
                }
                r
            }
        })?;
        crate::metrics::record_request_bytes("sftp", "PUT", size);
        tracing::debug!(key = %self.shown(&dst), size, "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        for f in files {
            let path = self.file_path(f.level, f.min_txid, f.max_txid);
            self.delete_path(&path)?;
        }
        Ok(())
    }

    fn resolve_timestamps(&self, files: &mut [LtxFileInfo]) -> Result<(), ReplicaError> {
        for f in files.iter_mut() {
            let path = self.file_path(f.level, f.min_txid, f.max_txid);
            let p2 = path.clone();
            let head = self.call("GET", &path, move |c| {
                let path = p2.clone();
                async move {
                    let mut file = c.sftp.open(path).await?;
                    let mut head = Vec::with_capacity(HEADER_TIMESTAMP_END);
                    (&mut file)
                        .take(HEADER_TIMESTAMP_END as u64)
                        .read_to_end(&mut head)
                        .await
                        .map_err(SftpError::from)?;
                    Ok(head)
                }
            })?;
            if let Some(t) = header_time(&head, f.created_at) {
                f.created_at = t;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn time_resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        lock_dir::read(self, name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        lock_dir::write(self, name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        lock_dir::delete(self, name)
    }
}

impl SftpReplica {
    fn delete_path(&self, path: &str) -> Result<(), ReplicaError> {
        let p2 = path.to_string();
        match self.call("DELETE", path, move |c| {
            let path = p2.clone();
            async move { Ok(c.sftp.remove_file(path).await?) }
        }) {
            Ok(()) | Err(ReplicaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The LTX header's timestamp when `head` starts like an LTX file and agrees with the listed
/// time to the second (a file someone replaced keeps its listed time).
fn header_time(head: &[u8], listed: SystemTime) -> Option<SystemTime> {
    if head.len() < HEADER_TIMESTAMP_END || &head[..4] != crate::ltx::MAGIC {
        return None;
    }
    let ms = i64::from_be_bytes(head[32..40].try_into().ok()?);
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?);
    let listed_s = listed.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (listed_s == u64::try_from(ms.div_euclid(1000)).ok()?).then_some(t)
}

//! Replica storage backends behind one small trait, and the conformance suite every backend runs.
//!
//! A replica holds only immutable LTX files, one directory or prefix per level (spec §1.1):
//! `file`, `abs`, `gs`, `webdav`, `sftp`: `<root>/ltx/<level>/<min>-<max>.ltx`; `s3`:
//! `<prefix>/<level as %04x>/<min>-<max>.ltx`.

pub mod abs;
mod async_read;
#[cfg(test)]
pub mod conformance;
#[cfg(test)]
pub mod counting;
pub mod file;
pub mod gs;
pub mod http;
pub mod nats;
mod objects;
pub mod oss;
pub mod s3;
pub mod sftp;
#[cfg(test)]
pub mod test_servers;
pub mod webdav;

pub use file::FileReplica;
pub use s3::S3Replica;

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use thiserror::Error;

use crate::TxId;

/// Highest level a replica may hold; level 9 holds snapshots only.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX file in a replica, as listing shows it (the name decides min/max; the header is
/// checked against it when the file is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxFileInfo {
    pub level: u8,
    pub min_txid: TxId,
    pub max_txid: TxId,
    pub size: u64,
    /// The file's time: mtime for `file`, the `litestream-timestamp` metadata or LastModified
    /// for S3 (spec §1.2).
    pub created_at: SystemTime,
}

/// What kind of failure a backend saw, so that callers can decide to retry, skip or stop.
#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: precondition failed: {reason}")]
    Precondition { key: String, reason: String },
    /// Worth retrying (network fault, 5xx, throttling). The message does not promise a retry:
    /// one-shot commands (restore, ltx) do not retry; the uploader's log line says it does.
    #[error("{key}: {reason} (temporary)")]
    Transient { key: String, reason: String },
    /// Not worth retrying without a change by the user (permissions, bad configuration).
    #[error("{key}: {reason}")]
    Fatal { key: String, reason: String },
}

impl ReplicaError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicaError::Transient { .. })
    }

    /// Classifies a local I/O error on `key`.
    pub fn from_io(key: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let key = key.into();
        match err.kind() {
            NotFound => ReplicaError::NotFound { key },
            AlreadyExists => ReplicaError::AlreadyExists { key },
            PermissionDenied | ReadOnlyFilesystem | InvalidInput | InvalidData => {
                ReplicaError::Fatal {
                    key,
                    reason: err.to_string(),
                }
            }
            _ => ReplicaError::Transient {
                key,
                reason: err.to_string(),
            },
        }
    }
}

/// Joins a key prefix and a name like Go's `path.Join` for clean inputs (the object stores'
/// `<path>/ltx/<level>/…` layout).
pub(crate) fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The key of the small object `name` (the writer lease) under `prefix`: `name` must be a
/// plain file name, and not `ltx`, where the LTX files live.
pub(crate) fn small_object_key(prefix: &str, name: &str) -> Result<String, ReplicaError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name == "ltx" {
        return Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: "object names must be plain file names (no '/', not 'ltx')".to_string(),
        });
    }
    Ok(join_key(prefix, name))
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn no_message_promises_a_retry() {
        let e = ReplicaError::from_io("ltx/0", Error::from(ErrorKind::PermissionDenied));
        assert!(!e.is_transient());
        let e = ReplicaError::from_io("ltx/0", Error::from(ErrorKind::TimedOut));
        assert!(e.is_transient());
        assert!(!e.to_string().contains("will retry"), "{e}");
    }

    #[test]
    fn a_level_that_is_a_file_is_an_error_naming_it_without_promising_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ltx")).unwrap();
        std::fs::write(dir.path().join("ltx/0"), b"not a directory").unwrap();
        let e = FileReplica::new(dir.path()).list(0).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("ltx/0") && !msg.contains("will retry"),
            "{msg}"
        );
    }
}

/// A precondition on [`ReplicaClient::write_object`], for leases and fencing (compare-and-swap on
/// one small object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Overwrite whatever is there.
    Always,
    /// Create only if no object of that name exists (S3 `If-None-Match: *`, `O_EXCL` for files);
    /// otherwise [`ReplicaError::AlreadyExists`].
    IfAbsent,
    /// Replace only if the current version tag equals this one (S3 `If-Match: <etag>`);
    /// otherwise [`ReplicaError::Precondition`] (or `NotFound` if the object is gone).
    IfMatch(String),
}

/// A small non-LTX object stored beside the levels (e.g. a writer lease), with the version tag
/// a later conditional write compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedObject {
    pub data: Vec<u8>,
    pub version: String,
}

/// A replica backend. Calls block; backends with async clients run them on their own runtime.
/// Implementations must be safe to share between the uploader and restore threads.
pub trait ReplicaClient: Send + Sync {
    /// `file`, `s3`, `memory`.
    fn kind(&self) -> &'static str;

    /// Human-readable location (URL form), for logs and errors. Never contains a secret.
    fn describe(&self) -> String;

    /// Reads and writes are local file I/O (no network, no request cost): the uploader keeps
    /// no local copy of an uploaded L0 file, and merges and restores stream the replica's
    /// files directly instead of spooling them to disk first.
    fn is_local(&self) -> bool {
        false
    }

    /// The object key or path of one file, for logs and errors.
    fn key(&self, level: u8, min: TxId, max: TxId) -> String;

    /// Every LTX file of `level`, sorted by (min, max). Names not matching the lowercase
    /// `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$` pattern are skipped. A missing level is empty.
    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError>;

    /// Streams one file.
    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError>;

    /// Stores the local file `src` as `level/min-max` atomically (readers never see a partial
    /// file), recording `timestamp_ms` as the file's time. Overwriting an existing name is
    /// allowed only with identical content (a retried upload).
    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError>;

    /// Deletes files; missing ones are not an error.
    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError>;

    /// Replaces each file's `created_at` by its exact LTX timestamp where listing only gave an
    /// approximation (S3: LastModified from LIST; here the `litestream-timestamp` metadata, one
    /// HEAD per file). Used by `-timestamp` restores only. The file backend lists exact times.
    fn resolve_timestamps(&self, files: &mut [LtxFileInfo]) -> Result<(), ReplicaError> {
        let _ = files;
        Ok(())
    }

    /// Reads the small object `name` (a plain file name such as `lease.json`, stored at the
    /// replica root, outside the level directories that restore reads).
    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: format!("the {} backend does not support objects", self.kind()),
        })
    }

    /// Writes the small object `name` under `cond`, atomically; returns its new version tag.
    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        let _ = (data, cond);
        Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: format!("the {} backend does not support objects", self.kind()),
        })
    }

    #[cfg(test)]
    /// The precision of listed file times (`created_at`) after [`Self::resolve_timestamps`]:
    /// a millisecond, or a second for stores whose file times are whole seconds (SFTP).
    fn time_resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    #[cfg(test)]
    /// Deletes the small object `name`; a missing one is not an error.
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: format!("the {} backend does not support objects", self.kind()),
        })
    }

    /// Every file of every level 0..=9, sorted by (level, min, max).
    fn list_all(&self) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let mut all = Vec::new();
        for level in 0..=SNAPSHOT_LEVEL {
            all.extend(self.list(level)?);
        }
        Ok(all)
    }

    /// The highest max TXID in any level, or 0 for an empty replica.
    fn max_txid(&self) -> Result<TxId, ReplicaError> {
        Ok(self
            .list_all()?
            .iter()
            .map(|f| f.max_txid)
            .max()
            .unwrap_or(0))
    }
}

/// Highest replica TXID a writer continues from. TXIDs count L0 files (at most one per sync):
/// 2^62 is out of reach at any sync rate for millennia, while a stray or hostile file named
/// near `u64::MAX` would make the next TXID wrap to 0 and every sync fail.
pub const MAX_CONTINUABLE_TXID: TxId = 1 << 62;

/// Every file of the replica (all levels), for a writer about to continue it: a file naming a
/// TXID above [`MAX_CONTINUABLE_TXID`] is an error naming it, instead of a TXID that would wrap.
pub fn continuable_files(client: &dyn ReplicaClient) -> Result<Vec<LtxFileInfo>, ReplicaError> {
    let files = client.list_all()?;
    if let Some(f) = files.iter().find(|f| f.max_txid > MAX_CONTINUABLE_TXID) {
        return Err(ReplicaError::Fatal {
            key: client.key(f.level, f.min_txid, f.max_txid),
            reason: format!(
                "names TXID {}, beyond any a writer reaches (the next TXID would overflow); \
                 no writer of this replica wrote it: remove it, or replicate to another path",
                crate::format_txid(f.max_txid)
            ),
        });
    }
    Ok(files)
}

/// Builds the client for a configured replica.
pub fn client_for(
    cfg: &crate::config::ReplicaConfig,
) -> Result<Box<dyn ReplicaClient>, ReplicaError> {
    match &cfg.backend {
        crate::config::Backend::File { path } => Ok(Box::new(FileReplica::new(path.clone()))),
        crate::config::Backend::S3(s3) => Ok(Box::new(S3Replica::new(s3))),
        crate::config::Backend::Abs(c) => Ok(Box::new(abs::AbsReplica::new(c))),
        crate::config::Backend::Gs(c) => Ok(Box::new(gs::GsReplica::new(c))),
        crate::config::Backend::Webdav(c) => Ok(Box::new(webdav::WebdavReplica::new(c))),
        crate::config::Backend::Nats(c) => Ok(Box::new(nats::NatsReplica::new(c))),
        crate::config::Backend::Sftp(c) => Ok(Box::new(sftp::SftpReplica::new(c))),
        crate::config::Backend::Oss(c) => Ok(Box::new(oss::OssReplica::new(c))),
    }
}

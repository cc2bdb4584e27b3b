//! Small versioned objects (the writer lease) over SFTP: `<path>/<name>`.
//!
//! SFTP has no compare-and-swap, so every write of an object runs under a lock that the server
//! makes atomic: creating the directory `<path>/.<name>.lock` (`mkdir` fails when it exists).
//! Holding it: read the object, compare its version tag (CRC-64 and length of the content, as
//! for `file`), write the new content to a temporary name and rename it into place, remove the
//! lock directory. Readers take no lock; the rename of SFTP version 3 cannot replace a file, so
//! the old object is removed first and a reader may, for that moment, find no object.
//!
//! What this guarantees: two writers that both go through this code never both win while each
//! finishes within [`LOCK_STALE`]. What it does not: a lock left by a killed writer blocks
//! writes until it is [`LOCK_STALE`] old (by the server's clock) and is then broken; a writer
//! paused longer than that while holding the lock may complete its write after another one
//! broke the lock and wrote.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use russh_sftp::client::error::Error as SftpError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{is_missing, CallError, SftpReplica};
use crate::replica::objects::{check_condition, check_name, version_of};
use crate::replica::{ReplicaError, VersionedObject, WriteCondition};
use crate::small_file::MAX_SMALL_FILE;

/// Age after which a lock directory is taken to be left by a dead writer and removed: far
/// longer than one read-compare-write (milliseconds), as long as WebDAV's lock timeout.
const LOCK_STALE: Duration = Duration::from_secs(30);
/// How long to wait for a lock another writer holds before giving up (transient): a little
/// longer than a left-over lock can live.
const LOCK_WAIT: Duration = Duration::from_secs(35);
/// First pause between attempts to take the lock; doubled up to [`LOCK_RETRY_MAX`].
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(10);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(500);

/// Reads an object, at most [`MAX_SMALL_FILE`] bytes of it.
pub(super) fn read(r: &SftpReplica, name: &str) -> Result<VersionedObject, ReplicaError> {
    check_name(name)?;
    let path = r.remote(name);
    let data = read_bytes(r, &path)?;
    Ok(VersionedObject {
        version: version_of(&data),
        data,
    })
}

fn read_bytes(r: &SftpReplica, path: &str) -> Result<Vec<u8>, ReplicaError> {
    let p2 = path.to_string();
    let data = r.call("GET", path, move |c| {
        let path = p2.clone();
        async move {
            let mut f = c.sftp.open(path).await?;
            let mut data = Vec::new();
            (&mut f)
                .take(MAX_SMALL_FILE + 1)
                .read_to_end(&mut data)
                .await
                .map_err(SftpError::from)?;
            Ok(data)
        }
    })?;
    if data.len() as u64 > MAX_SMALL_FILE {
        return Err(ReplicaError::Fatal {
            key: r.shown(path),
            reason: format!(
                "larger than {MAX_SMALL_FILE} bytes, which no lease is; remove it if no writer \
                 runs"
            ),
        });
    }
    Ok(data)
}

/// Writes `data` under `cond` while holding the object's lock.
pub(super) fn write(
    r: &SftpReplica,
    name: &str,
    data: &[u8],
    cond: WriteCondition,
) -> Result<String, ReplicaError> {
    check_name(name)?;
    let path = r.remote(name);
    locked(r, name, || {
        let current = match read_bytes(r, &path) {
            Ok(d) => Some(d),
            Err(ReplicaError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        check_condition(r.shown(&path), &cond, current.as_deref())?;
        replace(r, &path, data)?;
        Ok(version_of(data))
    })
}

/// Writes `data` to a temporary name and renames it over `path`.
fn replace(r: &SftpReplica, path: &str, data: &[u8]) -> Result<(), ReplicaError> {
    let (p2, data) = (path.to_string(), data.to_vec());
    r.call("PUT", path, move |c| {
        let (path, data) = (p2.clone(), data.clone());
        let tmp = format!("{path}.tmp-{:016x}", fastrand::u64(..));
        async move {
            let result: Result<(), SftpError> = async {
                let mut f = c.sftp.create(tmp.clone()).await?;
                f.write_all(&data).await?;
                f.shutdown().await?;
                match c.sftp.remove_file(path.clone()).await {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(e),
                }
                c.sftp.rename(tmp.clone(), path).await
            }
            .await;
            if result.is_err() {
                let _ = c.sftp.remove_file(tmp).await;
            }
            Ok(result?)
        }
    })
}

#[cfg(test)]
pub(super) fn delete(r: &SftpReplica, name: &str) -> Result<(), ReplicaError> {
    check_name(name)?;
    let path = r.remote(name);
    locked(r, name, || r.delete_path(&path))
}

/// Runs `f` holding the lock directory of `name`, and removes it whatever `f` returned.
fn locked<T>(
    r: &SftpReplica,
    name: &str,
    f: impl FnOnce() -> Result<T, ReplicaError>,
) -> Result<T, ReplicaError> {
    let lock = r.remote(&format!(".{name}.lock"));
    let started = Instant::now();
    let mut pause = LOCK_RETRY_FIRST;
    loop {
        match try_lock(r, &lock)? {
            true => break,
            false if started.elapsed() >= LOCK_WAIT => {
                return Err(ReplicaError::Transient {
                    key: r.shown(&lock),
                    reason: format!(
                        "locked by another writer for over {} s",
                        LOCK_WAIT.as_secs()
                    ),
                })
            }
            false => {
                std::thread::sleep(pause + Duration::from_millis(fastrand::u64(..10)));
                pause = (pause * 2).min(LOCK_RETRY_MAX);
            }
        }
    }
    let out = f();
    let l2 = lock.clone();
    if let Err(e) = r.call("DELETE", &lock, move |c| {
        let lock = l2.clone();
        async move { Ok(c.sftp.remove_dir(lock).await?) }
    }) {
        tracing::warn!(key = %r.shown(&lock), error = %e, "cannot remove the lease lock; it is broken once stale");
    }
    out
}

/// One attempt: `Ok(true)` when this process made the lock directory; a stale one is removed.
fn try_lock(r: &SftpReplica, lock: &str) -> Result<bool, ReplicaError> {
    let l2 = lock.to_string();
    r.call("PUT", lock, move |c| {
        let lock = l2.clone();
        async move {
            match c.sftp.create_dir(lock.clone()).await {
                Ok(()) => return Ok(true),
                Err(e) if is_missing(&e) => {
                    super::mkdir_all(&c.sftp, super::parent(&lock)).await?;
                    return Ok(c.sftp.create_dir(lock).await.is_ok());
                }
                Err(_) => {}
            }
            // Held by someone: break it when it is stale. The directory's mtime is the server's
            // clock; comparing it with ours needs clocks within seconds of each other.
            let meta = match c.sftp.metadata(lock.clone()).await {
                Ok(m) => m,
                Err(e) if is_missing(&e) => return Ok(false),
                Err(e) => return Err(CallError::from(e)),
            };
            let made = UNIX_EPOCH + Duration::from_secs(meta.mtime.unwrap_or(0) as u64);
            let age = SystemTime::now().duration_since(made).unwrap_or_default();
            if age > LOCK_STALE {
                tracing::warn!(lock = %lock, age_s = age.as_secs(), "breaking a stale lease lock left by a writer that did not finish");
                let _ = c.sftp.remove_dir(lock).await;
            }
            Ok(false)
        }
    })
}

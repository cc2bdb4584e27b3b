//! Small versioned objects of the `file` backend (`<root>/<name>`, beside `ltx/`), used for the
//! writer lease (`docs/fencing.md`).
//!
//! Version tag: the CRC-64 of the content and its length. Conditional writes (`IfAbsent`,
//! `IfMatch`) compare and replace under an exclusive `flock` on `<root>/.<name>.lock`, so two
//! processes (or threads) can never both win; the new content is written to a temp file and
//! renamed into place, so a reader (which takes no lock) sees the old or the new object, never
//! a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::small_file::{read_bounded, MAX_SMALL_FILE};

use super::file::{sync_dir, FileReplica, TempGuard};
use super::{ReplicaError, VersionedObject, WriteCondition};

/// The version tag of `data`: content hash and length (two different contents never share one
/// in practice; identical contents are the same state, so sharing a tag is harmless).
pub fn version_of(data: &[u8]) -> String {
    format!("{:016x}-{}", crate::ltx::crc64(data), data.len())
}

/// Object names are plain file names that cannot collide with the level tree or temp files.
pub(super) fn check_name(name: &str) -> Result<(), ReplicaError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name != "ltx"
        && !name.contains('/')
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: "invalid object name: use a plain file name (no '/', not starting with '.', \
                     not 'ltx')"
                .to_string(),
        })
    }
}

/// Holds the exclusive lock of one object until dropped (closing the descriptor unlocks).
struct ObjectLock {
    _file: File,
}

fn lock(client: &FileReplica, name: &str) -> Result<ObjectLock, ReplicaError> {
    let root = client.root();
    let path = root.join(format!(".{name}.lock"));
    let key = path.display().to_string();
    fs::create_dir_all(root).map_err(|e| ReplicaError::from_io(key.clone(), e))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ReplicaError::from_io(key.clone(), e))?;
    file.lock().map_err(|e| ReplicaError::from_io(key, e))?;
    Ok(ObjectLock { _file: file })
}

/// The object's content, read only up to [`MAX_SMALL_FILE`] bytes (an object larger than that
/// is an error naming it: no lease is that large).
fn read_current(path: &Path) -> Result<Option<Vec<u8>>, ReplicaError> {
    read_bounded(path, MAX_SMALL_FILE)
        .map_err(|e| ReplicaError::from_io(path.display().to_string(), e))
}

pub(super) fn read(client: &FileReplica, name: &str) -> Result<VersionedObject, ReplicaError> {
    check_name(name)?;
    let path = client.object_path(name);
    match read_current(&path)? {
        Some(data) => Ok(VersionedObject {
            version: version_of(&data),
            data,
        }),
        None => Err(ReplicaError::NotFound {
            key: path.display().to_string(),
        }),
    }
}

/// Writes `data` to a temp file beside `dst`, fsyncs it and renames it over `dst`.
fn replace(dst: &Path, data: &[u8]) -> Result<(), ReplicaError> {
    let key = dst.display().to_string();
    let io_err = |e| ReplicaError::from_io(key.clone(), e);
    let dir = dst.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{:016x}", fastrand::u64(..)));
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(data).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    drop(f);
    fs::rename(&tmp, dst).map_err(io_err)?;
    guard.0 = None;
    sync_dir(&dir).map_err(io_err)?;
    Ok(())
}

pub(super) fn write(
    client: &FileReplica,
    name: &str,
    data: &[u8],
    cond: WriteCondition,
) -> Result<String, ReplicaError> {
    check_name(name)?;
    let path = client.object_path(name);
    let key = path.display().to_string();
    let _lock = lock(client, name)?;
    let current = read_current(&path)?;
    check_condition(key, &cond, current.as_deref())?;
    replace(&path, data)?;
    Ok(version_of(data))
}

/// Whether a write under `cond` may replace `current` (the object's content, `None`: absent),
/// for stores that compare versions themselves while holding a lock; the error names `key`.
pub(super) fn check_condition(
    key: String,
    cond: &WriteCondition,
    current: Option<&[u8]>,
) -> Result<(), ReplicaError> {
    match (cond, current) {
        (WriteCondition::Always, _) | (WriteCondition::IfAbsent, None) => Ok(()),
        (WriteCondition::IfAbsent, Some(_)) => Err(ReplicaError::AlreadyExists { key }),
        (WriteCondition::IfMatch(_), None) => Err(ReplicaError::NotFound { key }),
        (WriteCondition::IfMatch(want), Some(cur)) => {
            let have = version_of(cur);
            if &have == want {
                Ok(())
            } else {
                Err(ReplicaError::Precondition {
                    key,
                    reason: format!("version is {have}, not {want}"),
                })
            }
        }
    }
}

#[cfg(test)]
pub(super) fn delete(client: &FileReplica, name: &str) -> Result<(), ReplicaError> {
    check_name(name)?;
    let path = client.object_path(name);
    let _lock = lock(client, name)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReplicaError::from_io(path.display().to_string(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ReplicaClient;

    #[test]
    fn objects_live_at_the_root_outside_the_levels() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path());
        client
            .write_object("lease.json", b"{}", WriteCondition::IfAbsent)
            .unwrap();
        assert_eq!(fs::read(dir.path().join("lease.json")).unwrap(), b"{}");
        assert!(client.list_all().unwrap().is_empty());
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path());
        for name in ["", ".hidden", "a/b", "ltx", ".."] {
            assert!(
                matches!(
                    client.write_object(name, b"x", WriteCondition::Always),
                    Err(ReplicaError::Fatal { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn version_depends_on_content() {
        assert_eq!(version_of(b"a"), version_of(b"a"));
        assert_ne!(version_of(b"a"), version_of(b"b"));
        assert_ne!(version_of(b""), version_of(b"\0"));
    }
}

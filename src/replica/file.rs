//! The `file` backend: a local directory laid out as `<root>/ltx/<level>/<min>-<max>.ltx`
//! (spec §1.1), with each file's mtime holding its LTX timestamp (spec §1.2).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::ltx::{format_file_name, parse_file_name};
use crate::TxId;

/// A replica in a local directory. Shareable between threads: it holds no open files.
#[derive(Debug, Clone)]
pub struct FileReplica {
    root: PathBuf,
}

impl FileReplica {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileReplica { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/ltx/<level>`.
    pub fn level_dir(&self, level: u8) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// `<root>/ltx/<level>/<min>-<max>.ltx`.
    pub fn file_path(&self, level: u8, min: TxId, max: TxId) -> PathBuf {
        self.level_dir(level).join(format_file_name(min, max))
    }

    /// `<root>/<name>`: a small object beside `ltx/` (leases; see `docs/fencing.md`).
    pub fn object_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Converts an LTX timestamp (ms since the epoch, possibly negative) to a `SystemTime`.
pub(crate) fn system_time_from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// Removes a temp file when dropped unless disarmed (after a successful rename).
pub(super) struct TempGuard(pub(super) Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(err) = fs::remove_file(&p) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %err, "cannot remove temp file");
                }
            }
        }
    }
}

/// fsyncs a directory so that a rename or create in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ReplicaClient for FileReplica {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn is_local(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let abs = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", abs.display())
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.file_path(level, min, max).display().to_string()
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        crate::metrics::record_request("file", "LIST");
        let dir = self.level_dir(level);
        let dir_key = dir.display().to_string();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(ReplicaError::from_io(dir_key, err)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ReplicaError::from_io(dir_key.clone(), e))?;
            let name = entry.file_name();
            let Some((min_txid, max_txid)) = name.to_str().and_then(parse_file_name) else {
                continue;
            };
            let path = entry.path();
            // Follow symlinks, like a plain open would.
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                // Deleted between readdir and stat (retention running concurrently).
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(ReplicaError::from_io(path.display().to_string(), err)),
            };
            if !meta.is_file() {
                continue;
            }
            let created_at = meta
                .modified()
                .map_err(|e| ReplicaError::from_io(path.display().to_string(), e))?;
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size: meta.len(),
                created_at,
            });
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        crate::metrics::record_request("file", "GET");
        let path = self.file_path(level, min, max);
        let f =
            File::open(&path).map_err(|e| ReplicaError::from_io(path.display().to_string(), e))?;
        Ok(Box::new(f))
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        let dir = self.level_dir(level);
        let name = format_file_name(min, max);
        let dst = dir.join(&name);
        let key = dst.display().to_string();
        let io_err = |e| ReplicaError::from_io(key.clone(), e);

        let mut input =
            File::open(src).map_err(|e| ReplicaError::from_io(src.display().to_string(), e))?;
        fs::create_dir_all(&dir).map_err(io_err)?;
        // Not matching the listing pattern, so a crash leaves nothing a reader would use.
        let tmp = dir.join(format!(".{name}.tmp-{:016x}", fastrand::u64(..)));
        let mut guard = TempGuard(Some(tmp.clone()));
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err)?;
        crate::metrics::record_request("file", "PUT");
        let n = io::copy(&mut input, &mut out).map_err(io_err)?;
        crate::metrics::record_request_bytes("file", "PUT", n);
        out.set_modified(system_time_from_ms(timestamp_ms))
            .map_err(io_err)?;
        out.sync_all().map_err(io_err)?;
        drop(out);
        fs::rename(&tmp, &dst).map_err(io_err)?;
        guard.0 = None;
        sync_dir(&dir).map_err(io_err)?;
        tracing::debug!(path = %dst.display(), "stored ltx file");
        Ok(())
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        crate::metrics::record_request("file", "DELETE");
        for f in files {
            let path = self.file_path(f.level, f.min_txid, f.max_txid);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(ReplicaError::from_io(path.display().to_string(), err)),
            }
        }
        Ok(())
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        super::objects::read(self, name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        super::objects::write(self, name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        super::objects::delete(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::conformance;

    fn plant(root: &Path) -> impl Fn(u8, &str, &[u8]) + '_ {
        move |level, name, data| {
            let dir = root.join("ltx").join(level.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(name), data).unwrap();
        }
    }

    #[test]
    fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("replica"));
        conformance::run_all(&client, &plant(&dir.path().join("replica")));
    }

    #[test]
    fn layout_and_key() {
        let client = FileReplica::new("/r");
        assert_eq!(
            client.file_path(9, 1, 0x25),
            Path::new("/r/ltx/9/0000000000000001-0000000000000025.ltx")
        );
        assert_eq!(
            client.key(0, 2, 2),
            "/r/ltx/0/0000000000000002-0000000000000002.ltx"
        );
        assert_eq!(client.describe(), "file:///r");
        assert_eq!(client.kind(), "file");
    }

    #[test]
    fn put_leaves_no_temp_files_and_creates_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("a/b"));
        let src = dir.path().join("src");
        fs::write(&src, b"hello").unwrap();
        client.put(3, 5, 7, &src, 1_000).unwrap();
        let names: Vec<_> = fs::read_dir(client.level_dir(3))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["0000000000000005-0000000000000007.ltx".to_string()]
        );
        assert_eq!(fs::read(client.file_path(3, 5, 7)).unwrap(), b"hello");
    }

    #[test]
    fn put_missing_source_is_not_found_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path());
        let err = client
            .put(0, 1, 1, &dir.path().join("nope"), 0)
            .unwrap_err();
        assert!(matches!(err, ReplicaError::NotFound { .. }), "{err}");
        assert!(client.list(0).unwrap().is_empty());
    }

    #[test]
    fn subdirectory_with_ltx_name_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path());
        fs::create_dir_all(client.file_path(0, 1, 1)).unwrap();
        assert!(client.list(0).unwrap().is_empty());
    }

    #[test]
    fn negative_timestamp_round_trips() {
        assert_eq!(
            system_time_from_ms(-1500),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
        assert_eq!(
            system_time_from_ms(42),
            UNIX_EPOCH + Duration::from_millis(42)
        );
    }
}

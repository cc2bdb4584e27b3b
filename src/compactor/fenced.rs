//! A [`ReplicaClient`] view for the compactor's jobs: every write (`put`, `delete`) first makes
//! sure this process still holds the writer lease (renewing it when half of it is gone), so a
//! long merge that outlived the lease cannot store or delete anything after another writer took
//! over. Every other method is forwarded unchanged.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::replica::{LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition};
use crate::TxId;

pub struct Fenced<'a> {
    pub db: &'a Path,
    pub client: &'a Arc<dyn ReplicaClient>,
}

impl Fenced<'_> {
    fn check(&self, key: String) -> Result<(), ReplicaError> {
        crate::fencing::ensure_lease(self.db, self.client).map_err(|e| ReplicaError::Precondition {
            key,
            reason: e.to_string(),
        })
    }
}

impl ReplicaClient for Fenced<'_> {
    fn kind(&self) -> &'static str {
        self.client.kind()
    }

    fn is_local(&self) -> bool {
        self.client.is_local()
    }

    fn describe(&self) -> String {
        self.client.describe()
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.client.key(level, min, max)
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        self.client.list(level)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        self.client.open(level, min, max)
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        self.check(self.key(level, min, max))?;
        self.client.put(level, min, max, src, timestamp_ms)
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        if let Some(f) = files.first() {
            self.check(self.key(f.level, f.min_txid, f.max_txid))?;
        }
        self.client.delete(files)
    }

    fn resolve_timestamps(&self, files: &mut [LtxFileInfo]) -> Result<(), ReplicaError> {
        self.client.resolve_timestamps(files)
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        self.client.read_object(name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        self.client.write_object(name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        self.client.delete_object(name)
    }

    fn list_all(&self) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        self.client.list_all()
    }

    fn max_txid(&self) -> Result<TxId, ReplicaError> {
        self.client.max_txid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::FileReplica;

    /// A method the view does not forward falls back to the trait's default, which for the
    /// object methods is an error and for `is_local` is false: both show here.
    #[test]
    fn every_method_reaches_the_wrapped_client() {
        let dir = tempfile::tempdir().unwrap();
        let client: Arc<dyn ReplicaClient> = Arc::new(FileReplica::new(dir.path().join("r")));
        let db = dir.path().join("app.db");
        let fenced = Fenced {
            db: &db,
            client: &client,
        };
        assert!(fenced.is_local());
        fenced
            .write_object("probe.json", b"{}", WriteCondition::IfAbsent)
            .unwrap();
        assert_eq!(fenced.read_object("probe.json").unwrap().data, b"{}");
        fenced.delete_object("probe.json").unwrap();
        assert!(fenced.read_object("probe.json").is_err());
        let mut files = fenced.list_all().unwrap();
        fenced.resolve_timestamps(&mut files).unwrap();
        assert_eq!(fenced.max_txid().unwrap(), 0);
    }
}

//! A [`ReplicaClient`] view for the compactor's jobs: every write (`put`, `delete`) first makes
//! sure this process still holds the writer lease (renewing it when half of it is gone), so a
//! long merge that outlived the lease cannot store or delete anything after another writer took
//! over.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::replica::{LtxFileInfo, ReplicaClient, ReplicaError};
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
}

//! A file replica that records the requests made to it, for tests that bound request counts.

use std::io::Read;
use std::path::Path;

use parking_lot::Mutex;

use super::{
    FileReplica, LtxFileInfo, ReplicaClient, ReplicaError, VersionedObject, WriteCondition,
};
use crate::TxId;

/// Delegates to a [`FileReplica`], recording each LIST (its level), each GET of an LTX file and
/// each read of a small object.
pub struct Counting {
    pub inner: FileReplica,
    lists: Mutex<Vec<u8>>,
    gets: Mutex<usize>,
    object_reads: Mutex<usize>,
}

impl Counting {
    pub fn new(inner: FileReplica) -> Counting {
        Counting {
            inner,
            lists: Mutex::new(Vec::new()),
            gets: Mutex::new(0),
            object_reads: Mutex::new(0),
        }
    }

    /// (LISTs, GETs) so far.
    pub fn counts(&self) -> (usize, usize) {
        (self.lists.lock().len(), *self.gets.lock())
    }

    /// Small-object reads (`read_object`) so far.
    pub fn object_reads(&self) -> usize {
        *self.object_reads.lock()
    }

    /// The levels listed so far, in order.
    pub fn listed(&self) -> Vec<u8> {
        self.lists.lock().clone()
    }
}

impl ReplicaClient for Counting {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        self.inner.key(level, min, max)
    }
    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        self.lists.lock().push(level);
        self.inner.list(level)
    }
    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        *self.gets.lock() += 1;
        self.inner.open(level, min, max)
    }
    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        self.inner.put(level, min, max, src, timestamp_ms)
    }
    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        self.inner.delete(files)
    }
    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        *self.object_reads.lock() += 1;
        self.inner.read_object(name)
    }
    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        self.inner.write_object(name, data, cond)
    }
    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        self.inner.delete_object(name)
    }
}

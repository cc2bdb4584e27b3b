//! Applying a restore plan. STUB.
use std::path::PathBuf;
use super::Target;
use crate::replica::ReplicaClient;
use crate::TxId;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub target: Target,
    pub if_db_not_exists: bool,
    pub if_replica_exists: bool,
    pub force: bool,
    pub parallelism: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored { txid: TxId, page_size: u32, page_count: u32, files: usize },
    DbExists,
    NoReplica,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Other(String),
}

pub fn restore(_client: &dyn ReplicaClient, _opts: &RestoreOptions) -> Result<RestoreOutcome, RestoreError> {
    todo!()
}

//! Read replicas: a local SQLite file that follows a replica (docs/read-replicas.md).
//!
//! - [`journal`], [`dbheader`], [`lock`], [`state`]: pure building blocks (rollback journal
//!   format, page-1 fields, lock policy, the local records).
//! - [`batch`]: downloading LTX files whole into one batch of pages.
//! - [`apply`]: one batch as a SQLite-compatible write transaction on the local file.
//! - [`follow`]: a [`Follower`]: restore or resume the local file, poll, apply.
//! - [`status`]: [`FollowerStatus`], what the SQL surface and the CLI report.
//! - [`registry`]: the followers of this process and how the VFS routes opens to them.
//! - [`promote`]: turning a read replica into the primary that continues the chain.
//! - [`sys`]: SQLite's default VFS as the follower uses it, installed by the layer above.

pub mod apply_batch;
pub mod batch;
pub mod dbheader;
pub mod follow;
pub mod journal;
pub mod lock;
pub mod promote;
pub mod replica_status;
pub mod routing;
pub mod state;
pub mod sys;

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use follow::Follower;

use crate::ltx::LtxError;
use crate::replica::ReplicaError;
use crate::restore::RestoreError;
use crate::TxId;

#[derive(Debug, Error)]
pub enum FollowError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("replica database: {op}: {source}")]
    Db { op: &'static str, source: io::Error },
    #[error(
        "{path}: unreadable follower state: {reason} (delete it: the replica is then checked \
         page by page against the store)"
    )]
    BadState { path: PathBuf, reason: String },
    #[error("{key}: {source}")]
    Decode { key: String, source: LtxError },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("replica {0}")]
    Replica(#[from] ReplicaError),
    #[error("{0}")]
    Restore(#[from] RestoreError),
    #[error(
        "page {pgno} of {commit} is in no replica file up to TXID {txid:016x}; the replica is \
         damaged (the follower re-bases on the newest snapshot)"
    )]
    MissingPage { pgno: u32, commit: u32, txid: TxId },
    #[error(transparent)]
    Staging(#[from] crate::staging::StagingError),
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// A poll panicked; the poller retries with its error backoff.
    #[error("internal error: the read replica poller panicked ({0}); it retries")]
    Panicked(String),
    /// A poll panicked again right after the previous one did: polling stopped in this
    /// process (the local copy stays readable, at the TXID it holds).
    #[error("polling stopped: {0}; reopen the read replica to resume")]
    Stopped(String),
}

impl FollowError {
    pub(crate) fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> FollowError {
        let path = path.to_path_buf();
        move |source| FollowError::Io { path, op, source }
    }
}

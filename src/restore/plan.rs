//! Restore planning (spec §4.2). STUB.
use std::time::SystemTime;
use thiserror::Error;
use crate::replica::LtxFileInfo;
use crate::TxId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    TxId(TxId),
    Timestamp(SystemTime),
}

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("no matching backup files available")]
    NoFiles,
}

pub fn plan(_files: &[LtxFileInfo], _target: &Target) -> Result<Vec<LtxFileInfo>, PlanError> {
    todo!()
}

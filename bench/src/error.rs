//! One error type for the bench driver: what was being done, and why it failed.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sql {
        what: String,
        source: rusqlite::Error,
    },
    #[error("{what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("{what}: {msg}")]
    Failed { what: String, msg: String },
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// Adds "what was being done" to a lower-level error.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Sql {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for serde_json::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Json {
            what: what(),
            source,
        })
    }
}

/// A failure that is not a lower-level error (a child exited 1, a wait timed out, ...).
pub fn failed(what: impl Display, msg: impl Display) -> BenchError {
    BenchError::Failed {
        what: what.to_string(),
        msg: msg.to_string(),
    }
}

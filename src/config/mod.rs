//! `litestream.yml` (Litestream 0.5's format, spec §5), `$VAR` expansion, replica URLs and
//! Go-style durations, resolved into one typed [`Config`]. STUB: types are the contract.
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

/// Default `sync-interval` (spec §5).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file this was loaded from (`None` for a config built from a URI parameter).
    pub source: Option<PathBuf>,
    pub dbs: Vec<DbConfig>,
    pub logging: LoggingConfig,
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Absolute path of the database.
    pub path: PathBuf,
    /// `meta-path`: where local state lives; default `.<db name>-litestream` beside the db.
    pub meta_path: Option<PathBuf>,
    pub replica: ReplicaConfig,
    pub restore_if_db_not_exists: bool,
}

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub backend: Backend,
    pub sync_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum Backend {
    File { path: PathBuf },
    S3(S3Config),
}

#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub path: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    pub level: Option<String>,
    pub format: LogFormat,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Other(String),
}

impl ReplicaConfig {
    /// The replica as a URL (`file:///…`, `s3://bucket/path?endpoint=…`), without secrets.
    pub fn url(&self) -> String {
        todo!()
    }
}

/// `$LITESTREAM_CONFIG`, else `/etc/litestream.yml`.
pub fn default_path() -> PathBuf {
    todo!()
}

/// Loads the default config: `Ok(None)` when `LITESTREAM_CONFIG` is unset and
/// `/etc/litestream.yml` does not exist.
pub fn load_default() -> Result<Option<Config>, ConfigError> {
    todo!()
}

pub fn load(_path: &Path) -> Result<Config, ConfigError> {
    todo!()
}

pub fn parse_replica_url(_url: &str) -> Result<ReplicaConfig, ConfigError> {
    todo!()
}

pub fn parse_duration(_s: &str) -> Result<Duration, ConfigError> {
    todo!()
}

impl Config {
    /// The entry for `db_path` (compared after making both absolute and resolving symlinks of
    /// the parent directory; the database file itself may not exist yet).
    pub fn find_db(&self, _db_path: &Path) -> Option<&DbConfig> {
        todo!()
    }
}

/// Zero-config replication from a `replica=URL` URI parameter. STUB.
pub fn from_replica_url(_db_path: &Path, _url: &str) -> Result<DbConfig, ConfigError> {
    todo!()
}

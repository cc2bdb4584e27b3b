//! The YAML as written: serde structs for every `litestream.yml` key of spec §5 that this
//! library reads (or refuses). Unknown keys are ignored, as Litestream parses non-strictly.
//! Leaf values with a syntax of their own (durations, sizes) are checked here so that serde
//! reports their line and column; everything else is checked in `resolve`.
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::duration::{ByteSize, GoDuration};

/// The top level. The global replica defaults are read separately as a [`RawReplica`] from
/// the same document (every replica key may also appear at the top level).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    pub dbs: Option<Vec<RawDb>>,
    pub levels: Option<Vec<RawLevel>>,
    pub snapshot: Option<RawSnapshot>,
    pub l0_retention: Option<GoDuration>,
    pub l0_retention_check_interval: Option<GoDuration>,
    pub retention: Option<RawRetention>,
    pub addr: Option<String>,
    pub logging: Option<RawLogging>,
    pub lag_alert: Option<GoDuration>,
    pub shutdown_sync_timeout: Option<GoDuration>,
    pub shutdown_sync_interval: Option<GoDuration>,
    /// `exec`: the command `litestream replicate` starts (as its `-exec` flag).
    pub exec: Option<String>,
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: Option<GoDuration>,
    pub vfs: Option<super::default_vfs::RawVfs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawLevel {
    pub interval: GoDuration,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawSnapshot {
    pub interval: Option<GoDuration>,
    pub retention: Option<GoDuration>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawRetention {
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawLogging {
    pub level: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub stderr: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawDb {
    pub path: Option<String>,
    /// Directory mode (`dir` + `pattern` [+ `recursive`, `watch`, `meta-dir`]).
    pub dir: Option<String>,
    pub pattern: Option<String>,
    pub recursive: Option<bool>,
    pub watch: Option<bool>,
    pub meta_dir: Option<String>,
    pub meta_path: Option<String>,
    pub restore_if_db_not_exists: Option<bool>,
    pub snapshot: Option<RawSnapshot>,
    pub lag_alert: Option<GoDuration>,
    pub replica: Option<RawReplica>,
    pub replicas: Option<Vec<RawReplica>>,
    pub read_replicas: Option<Vec<RawReadReplica>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawReadReplica {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub poll_interval: Option<GoDuration>,
}

/// One replica (or, read from the top level, the global replica defaults). Deliberately
/// without `Debug`: it holds secrets.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawReplica {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub path: Option<String>,
    pub sync_interval: Option<GoDuration>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: Option<bool>,
    pub skip_verify: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<ByteSize>,
    pub concurrency: Option<usize>,
    /// Azure Blob Storage (`abs`).
    pub account_name: Option<String>,
    pub account_key: Option<String>,
    pub sas_token: Option<String>,
    /// WebDAV (`webdav`).
    pub webdav_url: Option<String>,
    pub webdav_username: Option<String>,
    pub webdav_password: Option<String>,
    /// NATS (`nats`); `password` is shared with SFTP in Litestream's format.
    pub jwt: Option<String>,
    pub seed: Option<String>,
    pub creds: Option<String>,
    pub nkey: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub tls: Option<bool>,
    pub root_cas: Option<Vec<String>>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Encryption: Litestream 0.5 refuses it, and so do we.
    pub age: Option<IgnoredAny>,
}

/// `Some(s)` unless `s` is empty: Go treats an empty string as unset.
pub(crate) fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(String::from)
}

//! `litestream.yml` (Litestream 0.5's format, spec §5), `$VAR` expansion, replica URLs and
//! Go-style durations, resolved into one typed [`Config`].
//!
//! Submodules: `file` (the YAML as written), `resolve` (YAML → [`Config`], all checks),
//! `expand` (`$VAR`, `~`, relative paths), `duration` (Go durations, byte sizes), `url`
//! (replica URLs), `error` ([`ConfigError`] with file, line, column and key path).
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cloud;
mod default_vfs;
mod dir_mode;
mod duration;
mod error;
mod expand;
mod global;
mod nats_keys;
mod oss_keys;
mod resolve;
mod sftp_keys;
mod url;
mod yaml;

pub use cloud::{AbsConfig, GsConfig, WebdavConfig};
pub use default_vfs::{default_on_load as vfs_default_on_load, DefaultVfs};
pub use dir_mode::DirConfig;
pub use duration::{format_go_duration, parse_byte_size};
pub use error::ConfigError;
pub use global::global;
pub use nats_keys::NatsConfig;
pub use oss_keys::OssConfig;
pub use sftp_keys::{HostKeyCheck, SftpConfig};
pub(crate) use url::ensure_scheme as ensure_endpoint_scheme;
pub(crate) use url::redact as redact_url;

/// Default `sync-interval` (spec §5).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default intervals of compaction levels L1..L3 (spec §2.1).
pub const DEFAULT_LEVELS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(5 * 60),
    Duration::from_secs(60 * 60),
];
/// Default `snapshot.interval` and `snapshot.retention`.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
pub const DEFAULT_SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Default `l0-retention` and `l0-retention-check-interval`.
pub const DEFAULT_L0_RETENTION: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Default `shutdown-sync-timeout` and `shutdown-sync-interval`.
pub const DEFAULT_SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Default `poll-interval` of a read replica.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default `heartbeat-interval` (Litestream 0.5's).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Shorter `heartbeat-interval`s are raised to this, as Litestream does: health-check
/// services count pings per minute at best.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Environment variable that turns `$VAR` expansion of the config file off (set by
/// `litestream replicate -no-expand-env` for the program it starts).
pub const NO_EXPAND_ENV: &str = "LITESTREAM_NO_EXPAND_ENV";
/// At most this many compaction levels (L1..L8) may be configured; L9 is the snapshot level.
pub const MAX_LEVELS: usize = 8;
/// Where the config is read from when `LITESTREAM_CONFIG` is not set.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/litestream.yml";

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (`None` for a config built from a URI parameter).
    pub source: Option<PathBuf>,
    /// Every database: the `path` entries and the databases the `dir` entries matched at load.
    pub dbs: Vec<DbConfig>,
    /// Directory-mode entries, with their index in `dbs:` as written.
    pub dirs: Vec<(usize, DirConfig)>,
    pub logging: LoggingConfig,
    /// `levels[].interval`: compaction intervals of L1..Ln (at most [`MAX_LEVELS`]).
    pub levels: Vec<Duration>,
    /// `snapshot.interval` (the effective, global value; a per-db value is used when the
    /// top level sets none, and per-db values must agree, as in Litestream).
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    /// `l0-retention`; zero disables L0 retention.
    pub l0_retention: Duration,
    pub l0_retention_check_interval: Duration,
    /// `retention.enabled`: whether remote files are ever deleted.
    pub retention_enabled: bool,
    /// Top-level `lag-alert` (`None` when unset or zero); each db may override it.
    pub lag_alert: Option<Duration>,
    /// `addr`: metrics listener `host:port`.
    pub addr: Option<String>,
    pub shutdown_sync_timeout: Duration,
    pub shutdown_sync_interval: Duration,
    /// `exec`: the command `litestream replicate` starts.
    pub exec: Option<String>,
    /// `heartbeat-url`: GET after each `heartbeat-interval` in which every database synced.
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: Duration,
    /// `vfs.default`: whether loading the extension makes `litestream` the default VFS.
    pub vfs_default: DefaultVfs,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            dbs: Vec::new(),
            dirs: Vec::new(),
            logging: LoggingConfig::default(),
            levels: DEFAULT_LEVELS.to_vec(),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_retention: DEFAULT_SNAPSHOT_RETENTION,
            l0_retention: DEFAULT_L0_RETENTION,
            l0_retention_check_interval: DEFAULT_L0_RETENTION_CHECK_INTERVAL,
            retention_enabled: true,
            lag_alert: None,
            addr: None,
            shutdown_sync_timeout: DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
            shutdown_sync_interval: DEFAULT_SHUTDOWN_SYNC_INTERVAL,
            exec: None,
            heartbeat_url: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            vfs_default: DefaultVfs::Auto,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Absolute path of the database.
    pub path: PathBuf,
    /// `meta-path`: where local state lives; default `.<db name>-litestream` beside the db
    /// (see [`DbConfig::meta_dir`]).
    pub meta_path: Option<PathBuf>,
    pub replica: ReplicaConfig,
    pub restore_if_db_not_exists: bool,
    /// `lag-alert` of this db, else the top-level one (`None`: no alert).
    pub lag_alert: Option<Duration>,
    /// `read-replicas`: local read-only followers of this database's replica.
    pub read_replicas: Vec<ReadReplicaConfig>,
}

impl DbConfig {
    /// The effective meta directory: `meta-path`, else [`default_meta_dir`].
    pub fn meta_dir(&self) -> PathBuf {
        match &self.meta_path {
            Some(p) => p.clone(),
            None => default_meta_dir(&self.path),
        }
    }
}

/// Suffix of the default meta directory, `.<db file name>-liblitestream` beside the database.
/// Not Litestream's `-litestream`: the official `litestream replicate` keeps its own `ltx/0`
/// files there, and both must be able to follow one database side by side.
pub const META_DIR_SUFFIX: &str = "-liblitestream";
/// Litestream's default suffix, which this library used before; see [`default_meta_dir`].
pub const LEGACY_META_DIR_SUFFIX: &str = "-litestream";

/// The default meta directory of `db_path`: `.<name>-liblitestream` beside it, unless only
/// `.<name>-litestream` exists and holds this library's `state.json` or a read replica's
/// `follower.json` (made before the default changed): that one keeps being used, so the
/// replica position is kept. (The official binary writes neither file.)
pub fn default_meta_dir(db_path: &Path) -> PathBuf {
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = db_path.parent().unwrap_or(Path::new("/"));
    let current = dir.join(format!(".{name}{META_DIR_SUFFIX}"));
    let legacy = dir.join(format!(".{name}{LEGACY_META_DIR_SUFFIX}"));
    let ours = ["state.json", "follower.json"];
    if !current.exists() && ours.iter().any(|f| legacy.join(f).is_file()) {
        return legacy;
    }
    current
}

/// One entry of `read-replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplicaConfig {
    /// `name`, if given.
    pub name: Option<String>,
    /// `type` as written (default `file`).
    pub kind: String,
    /// Absolute path of the local follower file.
    pub path: PathBuf,
    /// `poll-interval` (default 1s).
    pub poll_interval: Duration,
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
    Abs(AbsConfig),
    Gs(GsConfig),
    Webdav(WebdavConfig),
    Nats(NatsConfig),
    Sftp(SftpConfig),
    Oss(OssConfig),
}

impl Backend {
    /// The replica `type` (`file`, `s3`, `abs`, `gs`).
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::File { .. } => "file",
            Backend::S3(_) => "s3",
            Backend::Abs(_) => "abs",
            Backend::Gs(_) => "gs",
            Backend::Webdav(_) => "webdav",
            Backend::Nats(_) => "nats",
            Backend::Sftp(_) => "sftp",
            Backend::Oss(_) => "oss",
        }
    }
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket root. (Official
    /// Litestream writes `./0000/…` for a bucket-root URL and `/0000/…` for `bucket:` without
    /// `path:`, because it joins `path + "/"` literally.)
    pub path: String,
    pub region: Option<String>,
    /// Endpoint URL with scheme (`http://localhost:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_deref().map(url::redact))
            .field("force_path_style", &self.force_path_style)
            .field("skip_verify", &self.skip_verify)
            .field(
                "credentials",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `logging.level`, normalized by [`normalize_level`] (`trace`, `debug`, `info`, `warn`,
    /// `error`); `None` means info. `LOG_LEVEL` overrides it when logging starts.
    pub level: Option<String>,
    /// `logging.type`: `text` (also `pretty` or empty) or `json`.
    pub format: LogFormat,
    /// `logging.stderr` as written (this library always logs to stderr).
    pub stderr: bool,
}

/// The canonical name of a log level, case-insensitive (`WARNING` → `warn`); `None` if unknown.
pub fn normalize_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" => "error",
        _ => return None,
    })
}

impl Backend {
    /// The replica as a URL (`file:///…`, `s3://bucket/path?endpoint=…`), without secrets.
    pub fn url(&self) -> String {
        match self {
            Backend::File { path } => format!("file://{}", path.display()),
            Backend::Abs(c) => cloud::abs_url(c),
            Backend::Gs(c) => cloud::gs_url(c),
            Backend::Webdav(c) => cloud::webdav_url(c),
            Backend::Nats(c) => nats_keys::nats_url(c),
            Backend::Sftp(c) => sftp_keys::sftp_url(c),
            Backend::Oss(c) => oss_keys::oss_url(c),
            Backend::S3(s3) => {
                let mut out = format!("s3://{}", s3.bucket);
                if !s3.path.is_empty() {
                    out.push('/');
                    out.push_str(&url::percent_encode(&s3.path, true));
                }
                let mut query = Vec::new();
                if let Some(e) = &s3.endpoint {
                    query.push(format!(
                        "endpoint={}",
                        url::percent_encode(&url::redact(e), false)
                    ));
                }
                if let Some(r) = &s3.region {
                    query.push(format!("region={}", url::percent_encode(r, false)));
                }
                if s3.force_path_style != s3.endpoint.is_some() {
                    query.push(format!("forcePathStyle={}", s3.force_path_style));
                }
                if s3.skip_verify {
                    query.push("skipVerify=true".to_string());
                }
                if !query.is_empty() {
                    out.push('?');
                    out.push_str(&query.join("&"));
                }
                out
            }
        }
    }
}

impl ReplicaConfig {
    /// The replica as a URL, without secrets ([`Backend::url`]).
    pub fn url(&self) -> String {
        self.backend.url()
    }
}

/// `$LITESTREAM_CONFIG`, else `/etc/litestream.yml`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("LITESTREAM_CONFIG").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(SYSTEM_CONFIG_PATH),
    }
}

/// Loads the default config: `Ok(None)` when `LITESTREAM_CONFIG` is unset and
/// `/etc/litestream.yml` does not exist. A `LITESTREAM_CONFIG` naming a missing file is an
/// error.
pub fn load_default() -> Result<Option<Config>, ConfigError> {
    let var = std::env::var_os("LITESTREAM_CONFIG").filter(|v| !v.is_empty());
    load_default_from(var.as_deref().map(Path::new), Path::new(SYSTEM_CONFIG_PATH))
}

fn load_default_from(var: Option<&Path>, system: &Path) -> Result<Option<Config>, ConfigError> {
    match var {
        Some(p) => load(p).map(Some),
        None if !system.exists() => Ok(None),
        None => load(system).map(Some),
    }
}

/// Reads, `$VAR`-expands and resolves a config file. Relative paths in it are resolved
/// against the current directory (as Litestream does), `~` against `$HOME`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let expand = std::env::var_os(NO_EXPAND_ENV).is_none_or(|v| v.is_empty() || v == "0");
    load_with(path, expand)
}

/// [`load`], with `$VAR` expansion on or off (`-no-expand-env`).
pub fn load_with(path: &Path, expand: bool) -> Result<Config, ConfigError> {
    let cwd = std::env::current_dir().map_err(|e| {
        ConfigError::Other(format!(
            "cannot resolve relative paths: current directory: {e}"
        ))
    })?;
    let home = expand::home_dir();
    let shown = path.to_string_lossy();
    let file = expand::resolve_path(&shown, &cwd, home.as_deref())
        .map_err(|e| ConfigError::value("", e.to_string()))?;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path: file })
        }
        Err(source) => return Err(ConfigError::Read { path: file, source }),
    };
    let env = resolve::Env {
        cwd: &cwd,
        home: home.as_deref(),
    };
    let mut config = if expand {
        parse_text(&text, Some(path), &expand::process_env, &env)?
    } else {
        resolve::parse(&text, Some(path), &env)?
    };
    config.source = Some(file);
    Ok(config)
}

/// Expands `$VAR`s with `lookup`, then parses and resolves. `file` is only used in messages.
fn parse_text(
    text: &str,
    file: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
    env: &resolve::Env,
) -> Result<Config, ConfigError> {
    let (expanded, unset) = expand::expand_env_noting_unset(text, lookup);
    resolve::parse(&expanded, file, env).map_err(|e| e.with_unset_vars(&unset))
}

/// Parses a replica URL (`file:///abs/path` or `s3://bucket/path?…`) with the default
/// sync interval.
pub fn parse_replica_url(url: &str) -> Result<ReplicaConfig, ConfigError> {
    let parts = url::parse(url).map_err(|e| ConfigError::value("", e.to_string()))?;
    let backend = resolve::backend_from_url(parts)?;
    Ok(ReplicaConfig {
        backend,
        sync_interval: DEFAULT_SYNC_INTERVAL,
    })
}

/// The database entry for the zero-config URI parameter `?replica=URL`. The sync interval
/// is the default; callers may set `replica.sync_interval` afterwards.
pub fn from_replica_url(db_path: &Path, url: &str) -> Result<DbConfig, ConfigError> {
    let replica = parse_replica_url(url)?;
    Ok(DbConfig {
        path: absolute(db_path),
        meta_path: None,
        replica,
        restore_if_db_not_exists: false,
        lag_alert: None,
        read_replicas: Vec::new(),
    })
}

/// Parses a Go duration (`1s`, `500ms`, `1h30m`, `0`); negative durations are refused.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    duration::parse_go_duration(s).map_err(|e| ConfigError::value("", e.to_string()))
}

/// `p` made absolute against the current directory and cleaned lexically.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return expand::clean(p);
    }
    match std::env::current_dir() {
        Ok(cwd) => expand::clean(&cwd.join(p)),
        Err(_) => expand::clean(p),
    }
}

/// `p` absolute, with its parent directory canonicalized when it exists (symlinks resolved).
fn comparable(p: &Path) -> PathBuf {
    let abs = absolute(p);
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .unwrap_or_else(|_| parent.to_path_buf())
            .join(name),
        _ => abs,
    }
}

impl Config {
    /// The configuration of `db_path` (compared after making both absolute and resolving
    /// symlinks of the parent directory; the database file itself may not exist yet): its
    /// `path` entry, the database a `dir` entry matched at load, or what any `dir` entry would
    /// make of it (a database created since, or one to restore). For the CLI.
    pub fn find_db(&self, db_path: &Path) -> Option<Cow<'_, DbConfig>> {
        self.lookup(db_path, false)
    }

    /// The configuration the extension replicates `db_path` with: like [`Config::find_db`],
    /// but a file a `dir` entry did not match at load counts only with `watch: true`.
    pub fn replicated_db(&self, db_path: &Path) -> Option<Cow<'_, DbConfig>> {
        self.lookup(db_path, true)
    }

    fn lookup(&self, db_path: &Path, watched_only: bool) -> Option<Cow<'_, DbConfig>> {
        let abs = absolute(db_path);
        if let Some(db) = self.dbs.iter().find(|db| db.path == abs) {
            return Some(Cow::Borrowed(db));
        }
        let want = comparable(&abs);
        if let Some(db) = self.dbs.iter().find(|db| comparable(&db.path) == want) {
            return Some(Cow::Borrowed(db));
        }
        self.dirs
            .iter()
            .filter(|(_, d)| d.watch || !watched_only)
            .find_map(|(_, d)| d.db_for(&abs).or_else(|| d.db_for(&want)))
            .map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests;

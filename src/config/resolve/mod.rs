//! YAML text → [`Config`]: defaults, inheritance of the top-level replica keys, URL merging,
//! path resolution and every check, each failure naming its key (and line when known).
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;

use super::dir_mode::{self, DirConfig};
use super::duration::GoDuration;
use super::error::{KeyPath, Source};
use super::expand::resolve_path;
use super::url::{self as replica_url, UrlParts};
use super::yaml::{
    flow_too_deep, non_empty, RawConfig, RawDb, RawLogging, RawReplica, MAX_FLOW_DEPTH,
};
mod replica_keys;
pub(crate) use replica_keys::backend_from_url;
use replica_keys::{same_replica, AGE_REFUSED};

use super::{
    normalize_level, Backend, Config, ConfigError, DbConfig, LogFormat, LoggingConfig,
    ReadReplicaConfig, ReplicaConfig, S3Config, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_POLL_INTERVAL,
    DEFAULT_SYNC_INTERVAL, MAX_LEVELS, MIN_HEARTBEAT_INTERVAL,
};

/// What relative paths and `~` are resolved against.
pub(crate) struct Env<'a> {
    pub cwd: &'a Path,
    pub home: Option<&'a Path>,
}

/// Parses already `$VAR`-expanded YAML. `file` is only used in messages.
pub(crate) fn parse(text: &str, file: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    if let Some(line) = flow_too_deep(text, MAX_FLOW_DEPTH) {
        return Err(ConfigError::TooDeep {
            file: file.map(Path::to_path_buf),
            line,
            limit: MAX_FLOW_DEPTH,
        });
    }
    let src = Source { text, file };
    let raw: RawConfig = deserialize(&src)?;
    let global: RawReplica = deserialize(&src)?;
    Resolver { src, env, global }.config(raw)
}

fn deserialize<T: DeserializeOwned + Default>(src: &Source) -> Result<T, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(src.text);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        // An empty (or comment-only) file is an empty config, as in Litestream.
        Err(_) if is_empty_document(src.text) => Ok(T::default()),
        Err(e) => Err(src.serde(e)),
    }
}

fn is_empty_document(text: &str) -> bool {
    matches!(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text),
        Ok(serde_yaml_ng::Value::Null)
    )
}

struct Resolver<'a> {
    src: Source<'a>,
    env: &'a Env<'a>,
    global: RawReplica,
}

fn dur(d: &Option<GoDuration>) -> Option<Duration> {
    d.map(|d| d.0)
}

impl Resolver<'_> {
    fn err(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        self.src.err(path, message)
    }

    /// `d` must be greater than zero (Litestream's rule for intervals).
    fn positive(
        &self,
        d: Option<Duration>,
        path: &KeyPath,
    ) -> Result<Option<Duration>, ConfigError> {
        match d {
            Some(d) if d.is_zero() => Err(self.err(path, "must be greater than 0")),
            other => Ok(other),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let root = KeyPath::root();
        let mut c = Config::default();
        if let Some(levels) = &raw.levels {
            if levels.len() > MAX_LEVELS {
                return Err(self.err(
                    &root.key("levels"),
                    format!(
                        "at most {MAX_LEVELS} compaction levels may be configured, found {}",
                        levels.len()
                    ),
                ));
            }
            c.levels = Vec::with_capacity(levels.len());
            for (i, level) in levels.iter().enumerate() {
                let p = root.key("levels").index(i).key("interval");
                c.levels.extend(self.positive(Some(level.interval.0), &p)?);
            }
        }
        let snap = raw.snapshot.unwrap_or_default();
        let snap_path = root.key("snapshot");
        let (g_interval, g_retention) = (
            self.positive(dur(&snap.interval), &snap_path.key("interval"))?,
            self.positive(dur(&snap.retention), &snap_path.key("retention"))?,
        );
        let dbs = raw.dbs.unwrap_or_default();
        let (db_interval, db_retention) = self.db_snapshots(&dbs)?;
        c.snapshot_interval = g_interval.or(db_interval).unwrap_or(c.snapshot_interval);
        c.snapshot_retention = g_retention.or(db_retention).unwrap_or(c.snapshot_retention);
        c.l0_retention = dur(&raw.l0_retention).unwrap_or(c.l0_retention);
        let p = root.key("l0-retention-check-interval");
        c.l0_retention_check_interval = self
            .positive(dur(&raw.l0_retention_check_interval), &p)?
            .unwrap_or(c.l0_retention_check_interval);
        c.retention_enabled = raw.retention.and_then(|r| r.enabled).unwrap_or(true);
        c.addr = non_empty(&raw.addr);
        if let Some(a) = &c.addr {
            check_listen_addr(a).map_err(|e| self.err(&root.key("addr"), e.to_string()))?;
        }
        c.logging = self.logging(raw.logging.unwrap_or_default())?;
        c.lag_alert = dur(&raw.lag_alert).filter(|d| !d.is_zero());
        c.shutdown_sync_timeout =
            dur(&raw.shutdown_sync_timeout).unwrap_or(c.shutdown_sync_timeout);
        let p = root.key("shutdown-sync-interval");
        c.shutdown_sync_interval = self
            .positive(dur(&raw.shutdown_sync_interval), &p)?
            .unwrap_or(c.shutdown_sync_interval);
        c.exec = non_empty(&raw.exec);
        c.heartbeat_url = non_empty(&raw.heartbeat_url);
        c.heartbeat_interval = dur(&raw.heartbeat_interval)
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL)
            .max(MIN_HEARTBEAT_INTERVAL);
        if let Some(d) = raw.vfs.and_then(|v| v.default) {
            c.vfs_default = d
                .resolve()
                .map_err(|e| self.err(&root.key("vfs").key("default"), e.to_string()))?;
        }
        if self.global.age.is_some() {
            return Err(self.err(&root.key("age"), AGE_REFUSED));
        }
        // Directory entries first, so that a `path` entry under one of them is refused
        // whatever the order of the entries.
        let mut entries: Vec<(usize, RawDb)> = Vec::with_capacity(dbs.len());
        for (i, raw) in dbs.into_iter().enumerate() {
            let p = root.key("dbs").index(i);
            if non_empty(&raw.dir).is_some() && non_empty(&raw.path).is_some() {
                return Err(self.err(
                    &p,
                    "`path` and `dir` are both set; use `path` for one database or `dir` + \
                     `pattern` for a directory of them",
                ));
            }
            if non_empty(&raw.dir).is_some() {
                let (dir, matches) = self.dir_entry(raw, &p, c.lag_alert)?;
                for db in matches.iter().filter_map(|m| dir.db_for(m)) {
                    self.push_db(&mut c, db, &p)?;
                }
                c.dirs.push((i, dir));
            } else {
                entries.push((i, raw));
            }
        }
        for (i, raw) in entries {
            let db = self.db(raw, &root.key("dbs").index(i), c.lag_alert)?;
            if let Some((j, d)) = c.dirs.iter().find(|(_, d)| d.db_for(&db.path).is_some()) {
                return Err(self.err(
                    &root.key("dbs").index(i).key("path"),
                    format!(
                        "{} is also matched by dbs[{j}] (dir {}, pattern {:?}); a database is \
                         configured once: remove this entry, or change dbs[{j}]'s pattern",
                        db.path.display(),
                        d.dir.display(),
                        d.pattern
                    ),
                ));
            }
            self.push_db(&mut c, db, &root.key("dbs").index(i))?;
        }
        Ok(c)
    }

    /// Adds `db` (configured by the entry at `p`) unless its path or replica is taken.
    fn push_db(&self, c: &mut Config, db: DbConfig, p: &KeyPath) -> Result<(), ConfigError> {
        if let Some(j) = c.dbs.iter().position(|d: &DbConfig| d.path == db.path) {
            return Err(self.err(
                &p.key("path"),
                format!("{} is already configured by dbs[{j}]", db.path.display()),
            ));
        }
        if let Some(j) = c
            .dbs
            .iter()
            .position(|d: &DbConfig| same_replica(&d.replica.backend, &db.replica.backend))
        {
            return Err(self.err(
                &p.key("replica"),
                format!(
                    "dbs[{j}] already replicates to this replica (as {}); two databases in \
                     one replica overwrite each other's history: give each its own path",
                    c.dbs[j].path.display()
                ),
            ));
        }
        c.dbs.push(db);
        Ok(())
    }

    /// A directory-mode entry (`dir` + `pattern`): checks that the directory exists, the
    /// pattern is well formed and, without `watch`, matches at least one database now.
    /// Returns the entry and the databases it matches now.
    fn dir_entry(
        &self,
        mut raw: RawDb,
        p: &KeyPath,
        global_lag: Option<Duration>,
    ) -> Result<(DirConfig, Vec<std::path::PathBuf>), ConfigError> {
        let dir_raw = non_empty(&raw.dir).unwrap_or_default();
        let dir = self.path(&dir_raw, &p.key("dir"))?;
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(self.err(
                    &p.key("dir"),
                    format!(
                        "{} is not a directory; `dir` names the directory that holds the databases",
                        dir.display()
                    ),
                ))
            }
            Err(e) => {
                return Err(self.err(
                    &p.key("dir"),
                    format!("{}: {e}; create the directory or fix `dir`", dir.display()),
                ))
            }
        }
        let Some(pattern) = non_empty(&raw.pattern) else {
            return Err(self.err(
                p,
                "directory mode needs `pattern` (a file-name glob such as \"*.db\") beside `dir`",
            ));
        };
        dir_mode::check_pattern(&pattern)
            .map_err(|e| self.err(&p.key("pattern"), e.to_string()))?;
        if non_empty(&raw.meta_path).is_some() {
            return Err(self.err(
                &p.key("meta-path"),
                "`meta-path` names one database's state; in directory mode use `meta-dir`",
            ));
        }
        let meta_dir = match non_empty(&raw.meta_dir) {
            Some(m) => Some(self.path(&m, &p.key("meta-dir"))?),
            None => None,
        };
        let (recursive, watch) = (raw.recursive.unwrap_or(false), raw.watch.unwrap_or(false));
        raw.path = Some(dir.display().to_string());
        let template = self.db(raw, p, global_lag)?;
        if matches!(template.replica.backend, super::Backend::Nats(_)) {
            return Err(self.err(
                &p.key("replica"),
                "directory mode needs a replica with a path prefix (file, s3, abs, gs, webdav); \
                 a nats object store has none: list each database with `path`",
            ));
        }
        let entry = DirConfig {
            dir,
            pattern,
            recursive,
            watch,
            meta_dir,
            template,
        };
        let found = entry.scan().map_err(|e| {
            self.err(
                &p.key("dir"),
                format!("cannot list {}: {e}", entry.dir.display()),
            )
        })?;
        if !watch && found.is_empty() {
            return Err(self.err(
                &p.key("pattern"),
                format!(
                    "{:?} matches no SQLite database under {}{}; fix the pattern, or set \
                         `watch: true` to replicate databases created later",
                    entry.pattern,
                    entry.dir.display(),
                    if recursive {
                        " (recursive)"
                    } else {
                        " (add `recursive: true` for subdirectories)"
                    }
                ),
            ));
        }
        Ok((entry, found))
    }

    /// Per-db `snapshot:` values; they must agree (Litestream: the effective value is global).
    fn db_snapshots(
        &self,
        dbs: &[RawDb],
    ) -> Result<(Option<Duration>, Option<Duration>), ConfigError> {
        let mut found: [Option<(Duration, usize)>; 2] = [None, None];
        for (i, db) in dbs.iter().enumerate() {
            let (interval, retention) = db
                .snapshot
                .as_ref()
                .map_or((None, None), |s| (s.interval, s.retention));
            for (k, (name, value)) in [("interval", interval), ("retention", retention)]
                .into_iter()
                .enumerate()
            {
                let p = KeyPath::root()
                    .key("dbs")
                    .index(i)
                    .key("snapshot")
                    .key(name);
                let Some(v) = self.positive(dur(&value), &p)? else {
                    continue;
                };
                match found[k] {
                    Some((prev, j)) if prev != v => {
                        return Err(self.err(
                            &p,
                            format!(
                            "conflicts with dbs[{j}].snapshot.{name} ({} vs {}): snapshots are \
                             global, so use one value (or set the top-level `snapshot.{name}`)",
                            super::format_go_duration(v),
                            super::format_go_duration(prev),
                        ),
                        ))
                    }
                    Some(_) => {}
                    None => found[k] = Some((v, i)),
                }
            }
        }
        Ok((found[0].map(|f| f.0), found[1].map(|f| f.0)))
    }

    fn logging(&self, raw: RawLogging) -> Result<LoggingConfig, ConfigError> {
        let p = KeyPath::root().key("logging");
        let level = match non_empty(&raw.level) {
            None => None,
            Some(l) => Some(
                normalize_level(&l)
                    .ok_or_else(|| {
                        self.err(
                            &p.key("level"),
                            format!("unknown log level {l:?} (use debug, info, warn or error)"),
                        )
                    })?
                    .to_string(),
            ),
        };
        let format = match raw.kind.as_deref().unwrap_or("") {
            "" | "text" | "pretty" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(self.err(
                    &p.key("type"),
                    format!("unknown log type {other:?} (use text or json)"),
                ))
            }
        };
        Ok(LoggingConfig {
            level,
            format,
            stderr: raw.stderr.unwrap_or(false),
        })
    }

    fn path(&self, raw: &str, p: &KeyPath) -> Result<std::path::PathBuf, ConfigError> {
        resolve_path(raw, self.env.cwd, self.env.home).map_err(|e| self.err(p, e.to_string()))
    }

    fn db(
        &self,
        raw: RawDb,
        p: &KeyPath,
        global_lag: Option<Duration>,
    ) -> Result<DbConfig, ConfigError> {
        let Some(path) = non_empty(&raw.path) else {
            return Err(self.err(
                p,
                "missing `path`: every database needs the path of its file",
            ));
        };
        let path = self.path(&path, &p.key("path"))?;
        let shown = path.display().to_string();
        let meta_path = match non_empty(&raw.meta_path) {
            Some(m) => Some(self.path(&m, &p.key("meta-path"))?),
            None => None,
        };
        let (replica, rp) = match (raw.replica, raw.replicas) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    p,
                    format!(
                    "database {shown}: `replica` and `replicas` are both set; keep only `replica`"
                ),
                ))
            }
            (Some(r), None) => (r, p.key("replica")),
            (None, Some(list)) if list.len() > 1 => {
                return Err(self.err(
                    &p.key("replicas"),
                    format!(
                    "database {shown}: {} replicas configured, but Litestream 0.5 allows exactly \
                     one; keep one and write it as `replica:`", list.len()
                ),
                ))
            }
            (None, Some(list)) if !list.is_empty() => (
                list.into_iter().next().unwrap_or_default(),
                p.key("replicas").index(0),
            ),
            (None, _) => {
                return Err(self.err(
                    p,
                    format!(
                        "database {shown}: no replica configured; add `replica:` with a `url` (or \
                     `type` and `path`)"
                    ),
                ))
            }
        };
        let replica = self.replica(&replica, &rp, &shown)?;
        let mut read_replicas = Vec::new();
        for (i, rr) in raw
            .read_replicas
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let rrp = p.key("read-replicas").index(i);
            let Some(rr_path) = non_empty(&rr.path) else {
                return Err(self.err(&rrp, "missing `path`: the local file of the read replica"));
            };
            read_replicas.push(ReadReplicaConfig {
                name: non_empty(&rr.name),
                kind: non_empty(&rr.kind).unwrap_or_else(|| "file".to_string()),
                path: self.path(&rr_path, &rrp.key("path"))?,
                poll_interval: self
                    .positive(dur(&rr.poll_interval), &rrp.key("poll-interval"))?
                    .unwrap_or(DEFAULT_POLL_INTERVAL),
            });
        }
        Ok(DbConfig {
            path,
            meta_path,
            replica,
            restore_if_db_not_exists: raw.restore_if_db_not_exists.unwrap_or(false),
            lag_alert: match dur(&raw.lag_alert) {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => global_lag,
            },
            read_replicas,
        })
    }
}

/// `addr` is not `[host]:port` with a numeric port.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{addr:?} is not a listen address: use HOST:PORT or :PORT with a numeric port, e.g. \":9090\""
)]
pub(crate) struct ListenAddrError {
    addr: String,
}

/// `addr` must be `[host]:port` with a numeric port (`:9090`, `127.0.0.1:9090`, `[::1]:9090`).
fn check_listen_addr(addr: &str) -> Result<(), ListenAddrError> {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(ListenAddrError {
            addr: addr.to_string(),
        }),
    }
}

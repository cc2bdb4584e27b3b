//! `litestream replicate`, with the flags of Litestream 0.5.17. With `-exec CMD` (or the
//! config key `exec:`) it starts CMD with the extension preloaded, as `litestream run` does:
//! CMD's own writes are captured in-process. Without a command it runs in sidecar mode
//! ([`sidecar`], `docs/sidecar.md`): it follows databases that no extension writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::run::{self, Env, Plan};
use super::{config_arg, CliError, FlagSet};
use crate::config::{self, Config};

pub const USAGE: &str = "\
The replicate command starts a program with its SQLite databases replicated.
You can specify your database & replicas in a configuration file or you can
replicate a single database file by specifying its path and its replica in the
command line arguments.

Usage:

\tlitestream replicate [arguments]

\tlitestream replicate [arguments] DB_PATH REPLICA_URL

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-exec CMD
\t    Executes a subcommand with liblitestream preloaded, so that its
\t    writes are replicated in-process. Litestream exits when the child
\t    process exits, with the child's exit status (128+N if it was killed
\t    by signal N). Also the config key exec:.

\t-once
\t    Replicate once and exit. Cannot be used with -exec.

\t-force-snapshot
\t    Force a snapshot to be taken for all databases. Requires -once.

\t-enforce-retention
\t    Accepted for compatibility. Requires -once. Retention is enforced by the
\t    background compaction, as configured.

\t-log-level LEVEL
\t    Sets the log level. Overrides the config file setting.
\t    Valid values: trace, debug, info, warn, error

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

\t-restore-if-db-not-exists
\t    Restores the database from the replica if it doesn't exist.
\t    On first start with no backup, proceeds normally.

Without -exec, replicate runs as a sidecar: it follows the databases of
programs that do not load the extension (a statically linked or pure-Go
SQLite), copying what they commit from the WAL as soon as they commit.
Between copies it holds a read transaction so that SQLite cannot restart
the WAL over frames not copied yet; it adds no table to the database.
A database that a program with the extension loaded replicates itself is
shipped by that program; the sidecar defers to it and logs so.
SIGINT and SIGTERM: a final sync, then exit 0.
";

/// What `replicate` will do.
#[derive(Debug)]
pub struct Replicate {
    pub config: Config,
    /// The configuration file the child reads (the `-config` file, or one written for the
    /// positional form).
    pub config_file: PathBuf,
    /// `-no-expand-env`.
    pub expand: bool,
    pub exec: Option<String>,
    pub log_level: Option<&'static str>,
    pub restore_if_db_not_exists: bool,
    /// `-once`: sidecar mode copies and ships what is committed, then exits.
    pub once: bool,
    /// `-force-snapshot`: the first file shipped holds every page.
    pub force_snapshot: bool,
    /// The positional form wrote `config_file`; it is removed at the end.
    pub generated: bool,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn flag_set() -> FlagSet {
    config_arg::flags(FlagSet::new())
        .value("exec")
        .value("log-level")
        .bool("restore-if-db-not-exists")
        .bool("once")
        .bool("force-snapshot")
        .bool("enforce-retention")
}

/// Parses the arguments after `replicate`, in the order and with the messages of the
/// official binary.
pub fn parse(args: &[String]) -> Result<Replicate, CliError> {
    let f = flag_set().parse(args)?;
    let expand = !f.flag("no-expand-env");
    let log_level = match f.get("log-level").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(config::normalize_level(l).ok_or_else(|| {
            usage(format!(
                "invalid -log-level {l:?}: use trace, debug, info, warn or error"
            ))
        })?),
    };
    let (config, config_file, generated) = match f.args.as_slice() {
        [] => {
            let file = config_arg::path(f.get("config"));
            let cfg = config_arg::load(f.get("config"), expand)?;
            (cfg, std::path::absolute(&file).unwrap_or(file), false)
        }
        [db] => {
            return Err(usage(format!(
                "must specify at least one replica URL for {db}"
            )))
        }
        [db, urls @ ..] => {
            if f.get("config").is_some() {
                return Err(usage("cannot specify a replica URL and the -config flag"));
            }
            if let Some(u) = urls.iter().find(|u| u.starts_with('-')) {
                return Err(usage(format!(
                    "flag {u:?} must be positioned before DB_PATH and REPLICA_URL arguments"
                )));
            }
            let [url] = urls else {
                return Err(usage(
                    "only one replica URL per database is supported; give one REPLICA_URL",
                ));
            };
            let (cfg, file) = positional_config(Path::new(db), url)?;
            (cfg, file, true)
        }
    };
    let once = f.flag("once");
    let exec = f
        .get("exec")
        .filter(|e| !e.is_empty())
        .map(String::from)
        .or_else(|| config.exec.clone());
    let cleanup = |r: Result<Replicate, CliError>| {
        if r.is_err() && generated {
            let _ = std::fs::remove_file(&config_file);
        }
        r
    };
    let checked = (|| {
        if once && exec.is_some() {
            return Err(usage("cannot specify -once flag with -exec"));
        }
        if f.flag("force-snapshot") && !once {
            return Err(usage("cannot specify -force-snapshot flag without -once"));
        }
        if f.flag("enforce-retention") && !once {
            return Err(usage(
                "cannot specify -enforce-retention flag without -once",
            ));
        }
        Ok(())
    })();
    cleanup(checked.map(|()| Replicate {
        config,
        config_file: config_file.clone(),
        expand,
        exec,
        log_level,
        restore_if_db_not_exists: f.flag("restore-if-db-not-exists"),
        once,
        force_snapshot: f.flag("force-snapshot"),
        generated,
    }))
}

/// The positional form `DB_PATH REPLICA_URL`: a one-database configuration, written to a
/// file for the child (JSON, which YAML reads, so no value needs quoting rules).
fn positional_config(db: &Path, url: &str) -> Result<(Config, PathBuf), CliError> {
    let dbc = config::from_replica_url(db, url)?;
    let text = serde_json::json!({
        "dbs": [{ "path": dbc.path.display().to_string(), "replica": { "url": url } }]
    })
    .to_string();
    let file =
        std::env::temp_dir().join(format!("litestream-replicate-{}.yml", std::process::id()));
    std::fs::write(&file, text).map_err(|e| {
        usage(format!(
            "cannot write the configuration for {}: {}: {e}",
            db.display(),
            file.display()
        ))
    })?;
    let mut cfg = Config::default();
    crate::logging::init(&cfg.logging);
    cfg.source = Some(file.clone());
    cfg.dbs.push(dbc);
    Ok((cfg, file))
}

/// Restores each database with `restore-if-db-not-exists` (or the flag) whose file is
/// missing, before the program starts; no replica yet means a new database.
fn restore_missing(r: &Replicate) -> Result<(), CliError> {
    for db in &r.config.dbs {
        if !(r.restore_if_db_not_exists || db.restore_if_db_not_exists) || db.path.exists() {
            continue;
        }
        let client = crate::replica::client_for(&db.replica)?;
        let opts = crate::restore::RestoreOptions {
            output: db.path.clone(),
            target: crate::restore::Target::Latest,
            if_db_not_exists: true,
            if_replica_exists: true,
            force: false,
            parallelism: crate::restore::DEFAULT_PARALLELISM,
        };
        match crate::restore::restore(client.as_ref(), &opts)? {
            crate::restore::RestoreOutcome::Restored { txid, .. } => tracing::info!(
                db = %db.path.display(),
                replica = %client.describe(),
                txid = %crate::format_txid(txid),
                "restored database before starting"
            ),
            _ => tracing::info!(
                db = %db.path.display(),
                replica = %client.describe(),
                "no backup found; starting with a new database"
            ),
        }
    }
    Ok(())
}

/// What to start: the `exec` command split like a shell would (no expansion), with the
/// extension preloaded.
pub fn plan(r: &Replicate, env: &Env) -> Result<Plan, CliError> {
    let exec = r.exec.as_deref().unwrap_or_default();
    let words = shlex::split(exec).ok_or_else(|| {
        usage(format!(
            "cannot parse exec command {exec:?}: unbalanced quotes"
        ))
    })?;
    let Some((program, args)) = words.split_first() else {
        return Err(usage("exec command is empty"));
    };
    let library = run::find_library(None, env)?;
    let mut p = run::preload_plan(program, args, &library, &r.config_file, env);
    if let Some(level) = r.log_level {
        p.env.push(("LOG_LEVEL".into(), level.into()));
    }
    if !r.expand {
        p.env.push((config::NO_EXPAND_ENV.into(), "1".into()));
    }
    Ok(p)
}

/// The value of `-log-level` among `args`, before anything logs: logging is set up once,
/// while the configuration loads.
fn log_level_arg(args: &[String]) -> Option<&'static str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.strip_prefix("--").or_else(|| a.strip_prefix('-'))?;
        let value = match a.strip_prefix("log-level") {
            Some("") => it.next().map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => continue,
        };
        return value.and_then(config::normalize_level);
    }
    None
}

/// `litestream replicate ...`: the exit status.
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if let Some(level) = log_level_arg(args) {
        // Before any thread starts; the `-exec` child gets it through its environment too.
        std::env::set_var("LOG_LEVEL", level);
    }
    let env = Env {
        var: &|k| std::env::var(k).ok(),
        exe: std::env::current_exe().ok(),
    };
    let r = match parse(args) {
        Ok(r) => r,
        Err(CliError::Flag(super::FlagError::Help)) => {
            let _ = write!(out, "{USAGE}");
            return 0;
        }
        Err(e) => {
            let _ = writeln!(err, "Error: {e}");
            return 1;
        }
    };
    let started = restore_missing(&r).and_then(|()| match r.exec {
        None => Ok(None),
        Some(_) => plan(&r, &env).map(Some),
    });
    let status = match started {
        Ok(Some(p)) => {
            tracing::info!(exec = %r.exec.as_deref().unwrap_or_default(), dbs = r.config.dbs.len(), "replicating in-process");
            run::execute(&p, err)
        }
        Ok(None) => match sidecar::run(&r, r.once, r.force_snapshot) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "Error: {e}");
                1
            }
        },
        Err(e) => {
            let _ = writeln!(err, "Error: {e}");
            1
        }
    };
    if r.generated {
        let _ = std::fs::remove_file(&r.config_file);
    }
    status
}

mod read_guard;
mod sidecar;

#[cfg(test)]
mod tests;

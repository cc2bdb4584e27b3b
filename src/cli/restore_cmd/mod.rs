//! `litestream restore [flags] DB_PATH|REPLICA_URL` (spec §4.1).

mod progress_bar;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::flags::FlagSet;
use super::CliError;
use crate::config;
use crate::replica::{self, LtxFileInfo, ReplicaClient};
use crate::restore::{
    format_time, plan_replica, restore_with_progress, RestoreOptions, RestoreOutcome, Target,
    DEFAULT_PARALLELISM,
};
use crate::{format_txid, parse_txid};

pub const USAGE: &str = "\
The restore command recovers a database from a replica.

Usage:

\tlitestream restore [arguments] DB_PATH

\tlitestream restore [arguments] REPLICA_URL

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

\t-o PATH
\t    Output path of the restored database.
\t    Defaults to the original DB path (required with a replica URL).

\t-txid TXID
\t    Restore up to a specific 16-digit hex transaction ID (inclusive).
\t    Defaults to the highest available transaction.

\t-timestamp TIMESTAMP
\t    Restore to a point in time (RFC 3339, e.g. 2000-01-01T00:00:00Z):
\t    only files made strictly before it are used.

\t-if-db-not-exists
\t    Returns exit code of 0 if the database already exists.

\t-if-replica-exists
\t    Returns exit code of 0 if no backups found.

\t-force
\t    Overwrite an existing database and remove its -wal, -shm and -journal files.

\t-parallelism NUM
\t    Number of files downloaded ahead from remote replicas. Defaults to 8.

\t-dry-run
\t    Print the files the restore would use, and restore nothing.

\t-json
\t    Print the result (or with -dry-run, the plan) as JSON.

\t-f
\t    Follow mode. After restoring, continuously poll for and apply
\t    new changes (as a read replica does), until interrupted. The restored
\t    database should only be opened read-only by consumers.
\t    Cannot be used with -txid or -timestamp.

\t-follow-interval DURATION
\t    Polling interval for follow mode. Defaults to 1s.

\t-integrity-check MODE
\t    Run a post-restore integrity check on the database.
\t    MODE is one of: none, quick, full.
\t    Defaults to none.

Examples:

\t# Restore the latest state of a database listed in the config file.
\t$ litestream restore /path/to/db

\t# Restore from a replica URL into a new file.
\t$ litestream restore -o /tmp/db file:///backups/db
";

/// `^\w+://`, Litestream's test for a replica URL.
pub(crate) fn is_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) if i > 0 => s[..i].chars().all(|c| c.is_alphanumeric() || c == '_'),
        _ => false,
    }
}

/// Default `-follow-interval` (Litestream's).
const DEFAULT_FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn flag_set() -> FlagSet {
    FlagSet::new()
        .value("o")
        .value("config")
        .value("txid")
        .value("timestamp")
        .value("parallelism")
        .bool("if-db-not-exists")
        .bool("if-replica-exists")
        .bool("force")
        .bool("dry-run")
        .bool("json")
        // Litestream flags this implementation rejects with a clear message.
        .bool("f")
        .value("follow-interval")
        .value("integrity-check")
        .bool("no-expand-env")
}

fn parse_target(txid: Option<&str>, timestamp: Option<&str>) -> Result<Target, CliError> {
    match (txid, timestamp) {
        (Some(_), Some(_)) => Err(usage("cannot specify both -txid and -timestamp")),
        (Some(t), None) => parse_txid(t)
            .map(Target::TxId)
            .ok_or_else(|| usage("invalid txid format (want exactly 16 hex digits)")),
        (None, Some(ts)) => {
            let rfc = time::format_description::well_known::Rfc3339;
            time::OffsetDateTime::parse(ts, &rfc)
                .map(|t| Target::Timestamp(SystemTime::from(t)))
                .map_err(|_| {
                    usage("invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)")
                })
        }
        (None, None) => Ok(Target::Latest),
    }
}

/// Where to restore from and to.
struct Source {
    client: Box<dyn ReplicaClient>,
    output: PathBuf,
}

fn from_url(url: &str, output: Option<&str>, config: Option<&str>) -> Result<Source, CliError> {
    if config.is_some() {
        return Err(usage("cannot specify a replica URL and the -config flag"));
    }
    let Some(output) = output.filter(|o| !o.is_empty()) else {
        return Err(usage(
            "output path required: use -o PATH with a replica URL",
        ));
    };
    crate::logging::init_from_env();
    let rc = config::parse_replica_url(url)?;
    Ok(Source {
        client: replica::client_for(&rc)?,
        output: PathBuf::from(output),
    })
}

fn from_config(
    db: &str,
    output: Option<&str>,
    config: Option<&str>,
    expand: bool,
) -> Result<Source, CliError> {
    let cfg = super::config_arg::load(config, expand)?;
    let dbc = cfg
        .find_db(Path::new(db))
        .ok_or_else(|| usage(format!("database not found in config: {db}")))?;
    let output = match output.filter(|o| !o.is_empty()) {
        Some(o) => PathBuf::from(o),
        None => dbc.path.clone(),
    };
    Ok(Source {
        client: replica::client_for(&dbc.replica)?,
        output,
    })
}

pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let f = flag_set().parse(args)?;
    let follow = match (f.flag("f"), f.get("follow-interval")) {
        (false, _) => None,
        (true, None) => Some(DEFAULT_FOLLOW_INTERVAL),
        (true, Some(d)) => Some(
            config::parse_duration(d)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    usage(format!(
                        "invalid -follow-interval {d:?}: use a positive duration such as 1s"
                    ))
                })?,
        ),
    };
    if follow.is_some() && (f.is_set("txid") || f.is_set("timestamp")) {
        return Err(usage(
            "cannot use follow mode (-f) with -txid or -timestamp",
        ));
    }
    let integrity = match f.get("integrity-check") {
        None | Some("none") => None,
        Some("quick") => Some(false),
        Some("full") => Some(true),
        Some(other) => {
            return Err(usage(format!(
                "invalid -integrity-check mode {other:?}: use none, quick or full"
            )))
        }
    };
    let arg = match f.args.as_slice() {
        [] => return Err(usage("database path or replica URL required")),
        [a] if a.is_empty() => return Err(usage("database path or replica URL required")),
        [a] => a.clone(),
        _ => return Err(usage("too many arguments")),
    };
    let target = parse_target(f.get("txid"), f.get("timestamp"))?;
    let parallelism = match f.get("parallelism") {
        None => DEFAULT_PARALLELISM,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(usage(format!(
                    "invalid value {s:?} for flag -parallelism: must be a positive integer"
                )))
            }
        },
    };

    let src = if is_url(&arg) {
        from_url(&arg, f.get("o"), f.get("config"))?
    } else {
        from_config(&arg, f.get("o"), f.get("config"), !f.flag("no-expand-env"))?
    };

    if f.flag("dry-run") {
        let planned = plan_replica(src.client.as_ref(), &target)?;
        return print_plan(src.client.as_ref(), &planned, f.flag("json"), out);
    }

    let opts = RestoreOptions {
        output: src.output.clone(),
        target,
        if_db_not_exists: f.flag("if-db-not-exists"),
        if_replica_exists: f.flag("if-replica-exists"),
        force: f.flag("force"),
        parallelism,
    };
    if let Some(interval) = follow {
        // The follower restores a missing file itself and records its position beside it.
        return follow_forever(src, interval);
    }
    let started = Instant::now();
    let meter = progress_bar::Meter::for_run(f.flag("json"));
    let outcome = restore_with_progress(src.client.as_ref(), &opts, &meter);
    meter.finish();
    let outcome = outcome?;
    if let (Some(full), RestoreOutcome::Restored { .. }) = (integrity, &outcome) {
        // PRAGMA quick_check (or integrity_check) through the system's SQLite.
        if let Some(problems) = crate::ffi::sqlite_lib::integrity_check(&src.output, full)? {
            return Err(CliError::IntegrityFailed {
                path: src.output.clone(),
                problems,
            });
        }
    }
    report(&outcome, &src, started, f.flag("json"), out, err)
}

/// `-f`: keeps applying new replica files to the restored database, as a read replica does,
/// until the process is interrupted (each apply is one transaction, so an interrupt leaves a
/// consistent file).
fn follow_forever(src: Source, interval: std::time::Duration) -> Result<(), CliError> {
    use crate::follower::follow::{Follower, FollowerConfig};
    let follower = Follower::open(FollowerConfig {
        name: None,
        path: src.output.clone(),
        client: std::sync::Arc::from(src.client),
        poll_interval: interval,
    })
    .map_err(|e| usage(format!("follow {}: {e}", src.output.display())))?;
    tracing::info!(db = %src.output.display(), interval_ms = interval.as_millis() as u64, "following the replica; interrupt to stop");
    loop {
        if let Err(e) = follower.poll() {
            tracing::warn!(db = %src.output.display(), error = %e, "follow poll failed; will retry");
        }
        std::thread::sleep(interval);
    }
}

fn report(
    outcome: &RestoreOutcome,
    src: &Source,
    started: Instant,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match *outcome {
        RestoreOutcome::DbExists => {
            writeln!(
                err,
                "database already exists, skipping: {}",
                src.output.display()
            )?;
        }
        RestoreOutcome::NoReplica => {
            writeln!(
                err,
                "no matching backups found, skipping: {}",
                src.client.describe()
            )?;
        }
        RestoreOutcome::Restored {
            txid,
            page_count,
            files,
            ..
        } => {
            let ms = started.elapsed().as_millis() as u64;
            if json {
                let v = serde_json::json!({
                    "db_path": src.output.display().to_string(),
                    "replica": src.client.describe(),
                    "txid": format_txid(txid),
                    "duration_ms": ms,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "restored {} from {} at txid {} ({} pages from {} files) in {} ms",
                    src.output.display(),
                    src.client.describe(),
                    format_txid(txid),
                    page_count,
                    files,
                    ms
                )?;
            }
        }
    }
    Ok(())
}

fn print_plan(
    client: &dyn ReplicaClient,
    planned: &[LtxFileInfo],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let name = |f: &LtxFileInfo| crate::ltx::format_file_name(f.min_txid, f.max_txid);
    if json {
        let files: Vec<_> = planned
            .iter()
            .map(|f| {
                serde_json::json!({
                    "level": f.level,
                    "file": name(f),
                    "key": client.key(f.level, f.min_txid, f.max_txid),
                    "min_txid": format_txid(f.min_txid),
                    "max_txid": format_txid(f.max_txid),
                    "size": f.size,
                    "created_at": format_time(f.created_at),
                })
            })
            .collect();
        let txid = planned.last().map(|f| format_txid(f.max_txid));
        let v = serde_json::json!({ "replica": client.describe(), "txid": txid, "files": files });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<5}  {:<37}  {:<16}  {:<16}  {:>10}  timestamp",
        "level", "file", "min_txid", "max_txid", "size"
    )?;
    for f in planned {
        writeln!(
            out,
            "{:<5}  {:<37}  {:<16}  {:<16}  {:>10}  {}",
            f.level,
            name(f),
            format_txid(f.min_txid),
            format_txid(f.max_txid),
            f.size,
            format_time(f.created_at)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

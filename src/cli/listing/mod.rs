//! `litestream ltx [-config PATH] [-level N|all] [-json] DB_PATH|REPLICA_URL` and
//! `litestream databases [-config PATH] [-json]`, with Litestream 0.5.17's columns and JSON
//! fields.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::flags::{FlagSet, Parsed};
use super::restore_cmd::is_url;
use super::{config_arg, CliError};
use crate::config;
use crate::format_txid;
use crate::replica::{self, LtxFileInfo, ReplicaClient, SNAPSHOT_LEVEL};

pub const LTX_USAGE: &str = "\
The ltx command lists all LTX files available for a database.

Usage:

\tlitestream ltx [arguments] DB_PATH

\tlitestream ltx [arguments] REPLICA_URL

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

\t-level LEVEL
\t    Compaction level to list (0-9 or \"all\").
\t    Defaults to 0.

\t-json
\t    Output raw JSON instead of human-readable text.

Examples:

\t# List the L0 files of a database listed in the config file.
\t$ litestream ltx /path/to/db

\t# List every level of a replica.
\t$ litestream ltx -level all file:///backups/db
";

pub const DATABASES_USAGE: &str = "\
The databases command lists all databases in the configuration file.

Usage:

\tlitestream databases [arguments]

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-json
\t    Output raw JSON instead of human-readable text.

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.
";

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Writes rows the way Go's `tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)` does for tab-separated
/// cells: every column but the last is padded to its widest cell plus two spaces.
pub fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + 2 - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Go's `time.RFC3339` in UTC (seconds, `Z`), as Litestream prints file times.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    dt.format(&fmt).unwrap_or_else(|_| format!("{t:?}"))
}

/// The replica named by the one argument: a replica URL, or a database path looked up in the
/// configuration (`-config`, `-no-expand-env`).
pub(crate) fn client_for_arg(f: &Parsed) -> Result<Box<dyn ReplicaClient>, CliError> {
    let arg = match f.args.as_slice() {
        [a] if !a.is_empty() => a.clone(),
        [] | [_] => return Err(usage("database path or replica URL required")),
        _ => return Err(usage("too many arguments")),
    };
    if is_url(&arg) {
        if f.get("config").is_some() {
            return Err(usage("cannot specify a replica URL and the -config flag"));
        }
        crate::logging::init_from_env();
        return Ok(replica::client_for(&config::parse_replica_url(&arg)?)?);
    }
    let cfg = config_arg::load_parsed(f)?;
    let dbc = cfg
        .find_db(Path::new(&arg))
        .ok_or_else(|| usage(format!("database not found in config: {arg}")))?;
    Ok(replica::client_for(&dbc.replica)?)
}

/// `-level`: `None` for `all`.
fn parse_level(s: Option<&str>) -> Result<Option<u8>, CliError> {
    let Some(s) = s else { return Ok(Some(0)) };
    if s == "all" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if (0..=i64::from(SNAPSHOT_LEVEL)).contains(&n) => Ok(Some(n as u8)),
        Ok(_) => Err(usage(format!(
            "invalid value {s:?} for flag -level: level must be between 0 and 9"
        ))),
        Err(_) => Err(usage(format!(
            "invalid value {s:?} for flag -level: invalid level: must be 0-9 or \"all\""
        ))),
    }
}

#[derive(Serialize)]
struct LtxJson {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    timestamp: String,
}

pub fn run_ltx(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = config_arg::flags(FlagSet::new())
        .value("level")
        .bool("json")
        .parse(args)?;
    let level = parse_level(f.get("level"))?;
    let client = client_for_arg(&f)?;
    let files: Vec<LtxFileInfo> = match level {
        Some(l) => client.list(l)?,
        None => client.list_all()?,
    };
    if f.flag("json") {
        let rows: Vec<LtxJson> = files
            .iter()
            .map(|x| LtxJson {
                level: x.level,
                min_txid: format_txid(x.min_txid),
                max_txid: format_txid(x.max_txid),
                size: x.size,
                timestamp: rfc3339_seconds(x.created_at),
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let mut rows = vec![vec![
        "level".to_string(),
        "min_txid".to_string(),
        "max_txid".to_string(),
        "size".to_string(),
        "created".to_string(),
    ]];
    rows.extend(files.iter().map(|x| {
        vec![
            x.level.to_string(),
            format_txid(x.min_txid),
            format_txid(x.max_txid),
            x.size.to_string(),
            rfc3339_seconds(x.created_at),
        ]
    }));
    write_table(out, &rows)?;
    Ok(())
}

#[derive(Serialize)]
struct DatabaseJson {
    path: String,
    replica: String,
}

pub fn run_databases(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = config_arg::flags(FlagSet::new()).bool("json").parse(args)?;
    if !f.args.is_empty() {
        return Err(usage("too many arguments"));
    }
    let cfg = config_arg::load_parsed(&f)?;
    let dbs: Vec<DatabaseJson> = cfg
        .dbs
        .iter()
        .map(|d| DatabaseJson {
            path: d.path.display().to_string(),
            replica: d.replica.backend.kind().to_string(),
        })
        .collect();
    if f.flag("json") {
        let text = serde_json::to_string_pretty(&dbs).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let mut rows = vec![vec!["path".to_string(), "replica".to_string()]];
    rows.extend(dbs.into_iter().map(|d| vec![d.path, d.replica]));
    write_table(out, &rows)?;
    Ok(())
}

#[cfg(test)]
mod tests;

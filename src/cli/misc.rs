//! `snapshots` (the level-9 listing; Litestream 0.5.17 dropped the command, scripts still
//! call it), `generations` (0.5 replicas have none: an explanation) and `version`.

use std::io::Write;

use serde::Serialize;

use super::flags::FlagSet;
use super::listing::{client_for_arg, rfc3339_seconds, write_table};
use super::{config_arg, CliError};
use crate::format_txid;
use crate::replica::SNAPSHOT_LEVEL;

pub const SNAPSHOTS_USAGE: &str = "\
The snapshots command lists all snapshots (level-9 LTX files) available for a
database or replica.

Usage:

\tlitestream snapshots [arguments] DB_PATH

\tlitestream snapshots [arguments] REPLICA_URL

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

\t-replica NAME
\t    Optional, filter by a specific replica (its type: file, s3).

\t-json
\t    Output raw JSON instead of human-readable text.

Examples:

\t# List all snapshots for a database.
\t$ litestream snapshots /path/to/db

\t# List all snapshots by replica URL.
\t$ litestream snapshots s3://mybkt/db
";

pub const GENERATIONS_USAGE: &str = "\
The generations command existed for Litestream 0.3 replicas. Litestream 0.5
replicas have no generations: one unbroken chain of transaction IDs (TXIDs),
stored as LTX files in compaction levels. List them with:

\tlitestream ltx -level all DB_PATH|REPLICA_URL

and the snapshots (level 9) with:

\tlitestream snapshots DB_PATH|REPLICA_URL
";

pub const VERSION_USAGE: &str = "\
Prints the version.

Usage:

\tlitestream version [arguments]

Arguments:

\t-verbose
\t    Print detailed build metadata (Rust version, OS/arch).
";

#[derive(Serialize)]
struct SnapshotJson {
    replica: String,
    min_txid: String,
    max_txid: String,
    size: u64,
    created: String,
}

pub fn run_snapshots(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = config_arg::flags(FlagSet::new())
        .value("replica")
        .bool("json")
        .parse(args)?;
    let client = client_for_arg(&f)?;
    let kind = client.kind().to_string();
    if let Some(name) = f.get("replica").filter(|n| !n.is_empty()) {
        if name != kind {
            return Err(CliError::Usage(format!(
                "replica {name:?} not found for database {:?} (its replica is {kind:?})",
                f.args[0]
            )));
        }
    }
    let rows: Vec<SnapshotJson> = client
        .list(SNAPSHOT_LEVEL)?
        .iter()
        .map(|x| SnapshotJson {
            replica: kind.clone(),
            min_txid: format_txid(x.min_txid),
            max_txid: format_txid(x.max_txid),
            size: x.size,
            created: rfc3339_seconds(x.created_at),
        })
        .collect();
    if f.flag("json") {
        let text = serde_json::to_string_pretty(&rows).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let mut table = vec![vec![
        "replica".to_string(),
        "min_txid".into(),
        "max_txid".into(),
        "size".into(),
        "created".into(),
    ]];
    table.extend(rows.into_iter().map(|r| {
        vec![
            r.replica,
            r.min_txid,
            r.max_txid,
            r.size.to_string(),
            r.created,
        ]
    }));
    write_table(out, &table)?;
    Ok(())
}

/// `generations`: always an explanation on stderr and exit status 1, so that a script that
/// parses its output notices.
pub fn run_generations(args: &[String]) -> Result<(), CliError> {
    config_arg::flags(FlagSet::new())
        .value("replica")
        .parse(args)?;
    Err(CliError::Usage(
        "Litestream 0.5 replicas have no generations; list the LTX files with `litestream ltx -level all DB_PATH|REPLICA_URL` or the snapshots with `litestream snapshots DB_PATH|REPLICA_URL`".into(),
    ))
}

pub fn run_version(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = FlagSet::new().bool("verbose").parse(args)?;
    writeln!(out, "{}", super::version_string())?;
    if f.flag("verbose") {
        writeln!(
            out,
            "Package: {} {}",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(out, "Replica format: Litestream 0.5 (LTX v3)")?;
        writeln!(
            out,
            "OS/Arch: {}/{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )?;
    }
    Ok(())
}

//! `litestream read-replica sync|status|promote` for the `read-replicas:` of the configuration.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::flags::FlagSet;
use super::CliError;
use crate::config::{self, Config};
use crate::follower::follow::from_ms;
use crate::follower::promote::{promote, PromoteOptions, DEFAULT_LIVE_WINDOW};
use crate::follower::routing::{find_by_name, follower_config, SYNC_TIMEOUT};
use crate::follower::state::MetaFiles;
use crate::follower::{FollowError, Follower};
use crate::format_txid;
use crate::restore::format_time;

pub const USAGE: &str = "\
The read-replica command manages the read replicas listed under `read-replicas:` in the
configuration file.

Usage:

\tlitestream read-replica sync [-config PATH] NAME
\t    Restore the replica if missing, apply everything new now, print the TXID reached.

\tlitestream read-replica status [-config PATH] [-json]
\t    Name, path, TXID, newest TXID seen, lag, last poll and last error of each replica
\t    (from the local records; no request to the replica).

\tlitestream read-replica promote [-config PATH] [-force] [-live-window DURATION] NAME
\t    Catch up, then turn the replica into the primary that continues the TXID chain.
\t    Refused while the replica received a file within the live window (default 60s).

NAME is the replica's `name` or its `path`.
";

impl From<FollowError> for CliError {
    fn from(e: FollowError) -> Self {
        CliError::Usage(e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn load_config(path: Option<&str>) -> Result<Config, CliError> {
    let cfg = match path {
        Some(p) => config::load(Path::new(p))?,
        None => config::load_default()?.ok_or_else(|| {
            usage(format!(
                "config file not found: {}; use -config PATH",
                config::default_path().display()
            ))
        })?,
    };
    crate::logging::init(&cfg.logging);
    Ok(cfg)
}

fn one_name(args: &[String]) -> Result<&str, CliError> {
    match args {
        [n] if !n.is_empty() => Ok(n),
        [] => Err(usage("read replica name required")),
        _ => Err(usage("too many arguments")),
    }
}

pub fn run(args: &[String], out: &mut dyn Write, _err: &mut dyn Write) -> Result<(), CliError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage("subcommand required: sync, status or promote"));
    };
    match cmd.as_str() {
        "sync" => {
            let f = FlagSet::new().value("config").parse(rest)?;
            let cfg = load_config(f.get("config"))?;
            let name = one_name(&f.args)?;
            let (db, rr) = find_by_name(&cfg, name)
                .ok_or_else(|| usage(format!("read replica not found in config: {name}")))?;
            let follower = Follower::open(follower_config(db, rr)?)?;
            let txid = follower.sync(SYNC_TIMEOUT)?;
            writeln!(out, "{}", format_txid(txid))?;
            Ok(())
        }
        "status" => {
            let f = FlagSet::new().value("config").bool("json").parse(rest)?;
            let cfg = load_config(f.get("config"))?;
            status(&cfg, f.flag("json"), out)
        }
        "promote" => {
            let f = FlagSet::new()
                .value("config")
                .bool("force")
                .value("live-window")
                .parse(rest)?;
            let cfg = load_config(f.get("config"))?;
            let name = one_name(&f.args)?;
            let (db, rr) = find_by_name(&cfg, name)
                .ok_or_else(|| usage(format!("read replica not found in config: {name}")))?;
            let live_window = match f.get("live-window") {
                Some(s) => config::parse_duration(s)?,
                None => DEFAULT_LIVE_WINDOW,
            };
            let p = promote(
                follower_config(db, rr)?,
                &PromoteOptions {
                    force: f.flag("force"),
                    live_window,
                },
            )?;
            writeln!(
                out,
                "promoted {} at txid {}; to continue the chain, list it under `dbs:` with replica {} \
                 (and remove it from read-replicas)",
                rr.path.display(),
                format_txid(p.txid),
                p.replica
            )?;
            Ok(())
        }
        "help" | "-h" | "-help" | "--help" => Err(CliError::Flag(super::FlagError::Help)),
        other => Err(usage(format!(
            "unknown read-replica subcommand {other:?}: use sync, status or promote"
        ))),
    }
}

fn status(cfg: &Config, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for db in &cfg.dbs {
        for rr in &db.read_replicas {
            let meta = MetaFiles::for_db(&rr.path);
            let state = meta.load().ok().flatten();
            let rec = meta.load_status().ok().flatten().unwrap_or_default();
            let promoted = meta.primary_state_path().exists();
            let lag = rec.last_current_ms.map(|ms| {
                now.duration_since(from_ms(ms))
                    .unwrap_or_default()
                    .as_secs_f64()
            });
            rows.push(serde_json::json!({
                "name": rr.name,
                "path": rr.path.display().to_string(),
                "replica": db.replica.url(),
                "txid": state.as_ref().map(|s| format_txid(s.txid)),
                "primary_txid": format_txid(rec.primary_txid),
                "lag": lag,
                "last_poll": rec.last_poll_ms.map(|ms| format_time(from_ms(ms))),
                "last_error": rec.last_error,
                "promoted": promoted,
            }));
        }
    }
    if json {
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16}  {:<40}  {:<16}  {:<16}  {:>8}  {:<24}  last error",
        "name", "path", "txid", "primary txid", "lag", "last poll"
    )?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    for r in rows {
        let lag = r["lag"]
            .as_f64()
            .map(|l| format!("{l:.1}s"))
            .unwrap_or_else(|| "-".into());
        let txid = if r["promoted"].as_bool() == Some(true) {
            "promoted".to_string()
        } else {
            s(&r["txid"])
        };
        writeln!(
            out,
            "{:<16}  {:<40}  {:<16}  {:<16}  {:>8}  {:<24}  {}",
            s(&r["name"]),
            s(&r["path"]),
            txid,
            s(&r["primary_txid"]),
            lag,
            s(&r["last_poll"]),
            s(&r["last_error"])
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::tests::run_args;

    #[test]
    fn usage_errors_and_help() {
        let (code, out, _) = run_args(&["read-replica", "help"]);
        assert_eq!(code, 0);
        assert!(out.contains("promote"), "{out}");
        let (code, _, err) = run_args(&["read-replica"]);
        assert_eq!(code, 1);
        assert!(err.contains("subcommand required"), "{err}");
        let (code, _, err) = run_args(&["read-replica", "frobnicate"]);
        assert_eq!(code, 1);
        assert!(err.contains("unknown read-replica subcommand"), "{err}");
    }

    #[test]
    fn status_and_sync_from_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("litestream.yml");
        let rr = dir.path().join("ro.db");
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replica: {{type: file, path: {}}}\n    read-replicas:\n      - {{name: ro, type: sqlite, path: {}}}\n",
                dir.path().join("p.db").display(),
                dir.path().join("replica").display(),
                rr.display()
            ),
        )
        .unwrap();
        let c = cfg.to_string_lossy();
        let (code, out, err) = run_args(&["read-replica", "status", "-config", &c, "-json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["name"], "ro");
        assert!(v[0]["txid"].is_null());
        let (code, _, err) = run_args(&["read-replica", "sync", "-config", &c, "nope"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("read replica not found in config: nope"),
            "{err}"
        );
        // An empty replica cannot be restored: a clear error, no file left behind.
        let (code, _, err) = run_args(&["read-replica", "sync", "-config", &c, "ro"]);
        assert_eq!(code, 1);
        assert!(err.contains("no matching backup files"), "{err}");
        assert!(!rr.exists());
    }
}

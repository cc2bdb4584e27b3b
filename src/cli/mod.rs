//! The `litestream` command line: Litestream 0.5's commands (`replicate -exec`, `restore`,
//! `ltx`/`wal`, `databases`, `status`, `sync`, `reset`, `snapshots`, `generations`, `version`,
//! `help`)
//! plus `run` and `read-replica`. It never calls SQLite (the library links SQLite through the
//! loadable-extension API table, which is unset in the binary).

mod config_arg;
mod flags;
mod listing;
mod local;
mod misc;
mod read_replica;
pub mod replicate;
mod restore_cmd;
pub mod run;
mod sync;

use std::io::Write;

pub use flags::{FlagError, FlagSet, Parsed};

/// What a command failed with; printed as `Error: <message>`, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Flag(#[from] FlagError),
    #[error("{0}")]
    Restore(#[from] crate::restore::RestoreError),
    #[error("{0}")]
    Replica(#[from] crate::replica::ReplicaError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Output(#[from] std::io::Error),
    /// `restore -integrity-check` could not run SQLite's check.
    #[error("integrity check: {0}")]
    IntegrityCheck(#[from] crate::ffi::sqlite_lib::LibSqlError),
    /// `restore -integrity-check` found problems in the restored database.
    #[error(
        "integrity check failed on {}: {}; the restored file is left in place for inspection",
        path.display(),
        problems.join("; ")
    )]
    IntegrityFailed {
        path: std::path::PathBuf,
        problems: Vec<String>,
    },
}

pub fn version_string() -> String {
    format!(
        "liblitestream {} (litestream 0.5 replica format)",
        env!("CARGO_PKG_VERSION")
    )
}

const USAGE: &str = "\
litestream replicates SQLite databases: in-process, through the liblitestream extension,
to Litestream 0.5 replicas.

Usage:

\tlitestream <command> [arguments]

The commands are:

\tdatabases    list databases specified in config file
\tgenerations  explains that 0.5 replicas have no generations (see ltx)
\thelp         prints this help
\tltx          list available LTX files for a database
\tread-replica syncs, shows or promotes the read replicas of the config
\treplicate    runs a program with its databases replicated (-exec)
\treset        reset local state for a database
\trestore      recovers database backup from a replica
\trun          runs a program with liblitestream preloaded
\tsnapshots    list available snapshots (level 9) for a database
\tstatus       display replication status for databases
\tsync         waits until a database's changes are synced (and replicated)
\tversion      prints the binary version
\twal          deprecated alias of ltx

Use \"litestream <command> -h\" for more information about a command.
";

/// Runs the command line `args` (including the program name) and returns the exit status.
///
/// The streams are not locked for the whole command: stderr is shared with the log subscriber,
/// which writes from other threads too (the S3 runtime thread logs credential and TLS
/// warnings while this thread waits for its answer). Holding the lock here would deadlock.
pub fn main(args: Vec<String>) -> i32 {
    run(&args, &mut std::io::stdout(), &mut std::io::stderr())
}

/// [`main`] with explicit output streams.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    crate::ffi::osfile::install_for_followers();
    let result = match args.get(1).map(String::as_str) {
        None => {
            let _ = write!(out, "{USAGE}");
            return 1;
        }
        Some("help" | "-h" | "-help" | "--help") => {
            let _ = write!(out, "{USAGE}");
            return 0;
        }
        Some("version") => misc::run_version(&args[2..], out),
        Some("restore") => restore_cmd::run(&args[2..], out, err),
        Some("run") => return run::main(&args[2..], out, err),
        Some("replicate") => return replicate::main(&args[2..], out, err),
        Some("wal") => {
            let _ = writeln!(
                err,
                "Warning: 'wal' command is deprecated, please use 'ltx' instead"
            );
            listing::run_ltx(&args[2..], out)
        }
        Some("status") => local::run_status(&args[2..], out),
        Some("sync") => sync::run_sync(&args[2..], out),
        Some("reset") => local::run_reset(&args[2..], out),
        Some("snapshots") => misc::run_snapshots(&args[2..], out),
        Some("generations") => misc::run_generations(&args[2..]),
        Some("read-replica") => match read_replica::run(&args[2..], out, err) {
            Err(CliError::Flag(FlagError::Help)) => {
                let _ = write!(out, "{}", read_replica::USAGE);
                return 0;
            }
            r => r,
        },
        Some("ltx") => listing::run_ltx(&args[2..], out),
        Some("databases") => listing::run_databases(&args[2..], out),
        Some(other) => Err(CliError::Usage(format!(
            "unknown command {other:?}; run 'litestream help' for the list of commands"
        ))),
    };
    match result {
        Ok(()) => 0,
        Err(CliError::Flag(FlagError::Help)) => {
            let usage = match args.get(1).map(String::as_str) {
                Some("ltx" | "wal") => listing::LTX_USAGE,
                Some("databases") => listing::DATABASES_USAGE,
                Some("status") => local::STATUS_USAGE,
                Some("sync") => sync::SYNC_USAGE,
                Some("reset") => local::RESET_USAGE,
                Some("snapshots") => misc::SNAPSHOTS_USAGE,
                Some("generations") => misc::GENERATIONS_USAGE,
                Some("version") => misc::VERSION_USAGE,
                _ => restore_cmd::USAGE,
            };
            let _ = write!(out, "{usage}");
            0
        }
        Err(e) => {
            let _ = writeln!(err, "Error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run_args(args: &[&str]) -> (i32, String, String) {
        let mut argv = vec!["litestream".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&argv, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn version_and_help() {
        let (code, out, _) = run_args(&["version"]);
        assert_eq!(code, 0);
        assert_eq!(
            out.trim(),
            format!(
                "liblitestream {} (litestream 0.5 replica format)",
                env!("CARGO_PKG_VERSION")
            )
        );
        let (code, out, _) = run_args(&["help"]);
        assert_eq!(code, 0);
        for cmd in [
            "databases",
            "generations",
            "ltx",
            "read-replica",
            "replicate",
            "reset",
            "restore",
            "run",
            "snapshots",
            "status",
            "sync",
            "version",
            "wal",
        ] {
            assert!(
                out.contains(&format!("\t{cmd} ")),
                "help lists {cmd}: {out}"
            );
        }
        let (code, out, _) = run_args(&[]);
        assert_eq!(code, 1);
        assert!(out.contains("restore"));
    }

    #[test]
    fn unknown_command() {
        let (code, _, err) = run_args(&["frobnicate"]);
        assert_eq!(code, 1);
        assert!(
            err.starts_with("Error: unknown command \"frobnicate\""),
            "{err}"
        );
    }
}

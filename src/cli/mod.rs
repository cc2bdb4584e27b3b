//! The `litestream` command line: `restore`, `ltx`, `databases`, `run`, `read-replica`,
//! `version`, `help`. It never calls SQLite (the library links SQLite through the
//! loadable-extension API table, which is unset in the binary).

mod flags;
mod listing;
mod read_replica;
mod restore;
pub mod run;

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
}

pub fn version_string() -> String {
    format!(
        "liblitestream {} (litestream 0.5 replica format)",
        env!("CARGO_PKG_VERSION")
    )
}

const USAGE: &str = "\
litestream restores SQLite databases from Litestream 0.5 replicas, and runs programs with
their databases replicated.

Usage:

\tlitestream <command> [arguments]

The commands are:

\trestore      recovers database backup from a replica
\tread-replica syncs, shows or promotes the read replicas of the config
\tversion      prints the binary version
\thelp         prints this help
";

/// Runs the command line `args` (including the program name) and returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run(&args, &mut stdout.lock(), &mut stderr.lock())
}

/// [`main`] with explicit output streams.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = match args.get(1).map(String::as_str) {
        None => {
            let _ = write!(out, "{USAGE}");
            return 1;
        }
        Some("help" | "-h" | "-help" | "--help") => {
            let _ = write!(out, "{USAGE}");
            return 0;
        }
        Some("version") => writeln!(out, "{}", version_string()).map_err(CliError::from),
        Some("restore") => restore::run(&args[2..], out, err),
        Some("run") => return run::main(&args[2..], out, err),
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
                Some("ltx") => listing::LTX_USAGE,
                Some("databases") => listing::DATABASES_USAGE,
                _ => restore::USAGE,
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
        assert!(out.contains("restore") && out.contains("version"));
        let (code, out, _) = run_args(&[]);
        assert_eq!(code, 1);
        assert!(out.contains("restore"));
    }

    #[test]
    fn unknown_command() {
        let (code, _, err) = run_args(&["replicate"]);
        assert_eq!(code, 1);
        assert!(
            err.starts_with("Error: unknown command \"replicate\""),
            "{err}"
        );
    }
}

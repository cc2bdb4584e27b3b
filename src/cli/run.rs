//! `litestream run [-config PATH] [-library PATH] -- CMD [ARGS...]`: starts CMD with the
//! extension preloaded (`LD_PRELOAD`) and the configuration set (`LITESTREAM_CONFIG`), forwards
//! SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 to it, and exits with its status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CliError, FlagSet};
use crate::config;

pub const USAGE: &str = "\
The run command starts a program with liblitestream preloaded, so that the SQLite databases
named in the configuration are replicated by the program itself. SIGHUP, SIGINT, SIGQUIT,
SIGTERM, SIGUSR1 and SIGUSR2 are passed on to the program; litestream exits with the program's exit status (128+N if it was
killed by signal N).

Usage:

\tlitestream run [arguments] -- COMMAND [ARGS...]

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-library PATH
\t    The extension to preload. Defaults to $LITESTREAM_LIBRARY, else liblitestream.so
\t    next to this executable, else ../lib/liblitestream.so relative to it.

Only programs that load the system libsqlite3 dynamically are reached (the sqlite3 shell,
Python, most interpreters); programs with their own copy of SQLite are not.
";

/// Environment variable naming the extension to preload.
pub const LIBRARY_ENV: &str = "LITESTREAM_LIBRARY";
/// File name of the extension.
pub const LIBRARY_NAME: &str = "liblitestream.so";

/// Exit status when the command cannot be found / executed (as shells report it).
const EXIT_NOT_FOUND: i32 = 127;
const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status base for a command killed by a signal (as shells report it).
const EXIT_SIGNAL_BASE: i32 = 128;

/// What `run` will start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub program: String,
    pub args: Vec<String>,
    /// Set in the child's environment.
    pub env: Vec<(String, String)>,
}

/// Where the process environment and the executable are (injectable for tests).
pub struct Env<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub exe: Option<PathBuf>,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// The extension to preload: `-library`, `$LITESTREAM_LIBRARY`, or beside the executable.
pub fn find_library(flag: Option<&str>, env: &Env) -> Result<PathBuf, CliError> {
    let given = flag
        .map(String::from)
        .or_else(|| (env.var)(LIBRARY_ENV).filter(|v| !v.is_empty()));
    if let Some(p) = given {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(usage(format!("library not found: {}", p.display())));
        }
        return Ok(p.canonicalize().unwrap_or(p));
    }
    let dir = env.exe.as_deref().and_then(Path::parent);
    let candidates: Vec<PathBuf> = dir
        .map(|d| vec![d.join(LIBRARY_NAME), d.join("../lib").join(LIBRARY_NAME)])
        .unwrap_or_default();
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .ok_or_else(|| {
            usage(format!(
                "cannot find {LIBRARY_NAME} next to {}; pass -library PATH or set {LIBRARY_ENV}",
                env.exe
                    .as_deref()
                    .map_or("this executable".into(), |e| e.display().to_string())
            ))
        })
}

/// The configuration file to use (validated now, so that mistakes show before CMD starts).
fn find_config(flag: Option<&str>, env: &Env) -> Result<PathBuf, CliError> {
    let path = match flag {
        Some(p) => PathBuf::from(p),
        None => match (env.var)("LITESTREAM_CONFIG").filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(config::SYSTEM_CONFIG_PATH),
        },
    };
    if flag.is_none() && !path.exists() {
        return Err(usage(format!(
            "config file not found: {}; use -config PATH or set LITESTREAM_CONFIG",
            path.display()
        )));
    }
    config::load(&path)?;
    Ok(std::path::absolute(&path).unwrap_or(path))
}

/// Parses the arguments after `run` into what to start.
pub fn plan(args: &[String], env: &Env) -> Result<Plan, CliError> {
    let f = FlagSet::new()
        .value("config")
        .value("library")
        .parse(args)?;
    let Some((program, rest)) = f.args.split_first() else {
        return Err(usage(
            "no command given; usage: litestream run [-config PATH] -- COMMAND [ARGS...]",
        ));
    };
    let library = find_library(f.get("library"), env)?;
    let config = find_config(f.get("config"), env)?;
    Ok(preload_plan(program, rest, &library, &config, env))
}

/// Starts `program` with `library` in front of `LD_PRELOAD` and `LITESTREAM_CONFIG` set.
pub fn preload_plan(
    program: &str,
    args: &[String],
    library: &Path,
    config: &Path,
    env: &Env,
) -> Plan {
    let lib = library.display().to_string();
    let preload = match (env.var)("LD_PRELOAD").filter(|v| !v.trim().is_empty()) {
        Some(old) if old.split([':', ' ']).any(|p| p == lib) => old,
        Some(old) => format!("{lib}:{old}"),
        None => lib,
    };
    Plan {
        program: program.to_string(),
        args: args.to_vec(),
        env: vec![
            ("LD_PRELOAD".into(), preload),
            ("LITESTREAM_CONFIG".into(), config.display().to_string()),
        ],
    }
}

/// Starts the plan, forwarding signals, and returns the exit status to use.
pub fn execute(plan: &Plan, err: &mut dyn Write) -> i32 {
    if let Err(e) = crate::ffi::process::install_forwarding() {
        let _ = writeln!(err, "Error: cannot install signal handlers: {e}");
        return 1;
    }
    run_child(plan, err, true)
}

fn run_child(plan: &Plan, err: &mut dyn Write, forward: bool) -> i32 {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    cmd.envs(plan.env.iter().map(|(k, v)| (k, v)));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "Error: cannot run {:?}: {e}", plan.program);
            return match e.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => EXIT_NOT_EXECUTABLE,
                _ => 1,
            };
        }
    };
    if forward {
        crate::ffi::process::forward_to(child.id());
    }
    match child.wait() {
        Ok(status) => exit_code(status),
        Err(e) => {
            let _ = writeln!(err, "Error: waiting for {:?}: {e}", plan.program);
            1
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => EXIT_SIGNAL_BASE + sig,
        (None, None) => 1,
    }
}

/// `litestream run ...`: the exit status.
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let env = Env {
        var: &|k| std::env::var(k).ok(),
        exe: std::env::current_exe().ok(),
    };
    match plan(args, &env) {
        Ok(p) => execute(&p, err),
        Err(CliError::Flag(super::FlagError::Help)) => {
            let _ = write!(out, "{USAGE}");
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plan_finds_library_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join(LIBRARY_NAME), b"").unwrap();
        let cfg = dir.path().join("litestream.yml");
        std::fs::write(&cfg, "dbs: []\n").unwrap();
        let var = |k: &str| (k == "LD_PRELOAD").then(|| "libother.so".to_string());
        let env = Env {
            var: &var,
            exe: Some(bin.join("litestream")),
        };
        let p = plan(
            &args(&[
                "-config",
                &cfg.to_string_lossy(),
                "--",
                "python3",
                "app.py",
                "-x",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(p.program, "python3");
        assert_eq!(p.args, args(&["app.py", "-x"]));
        let lib = bin.join(LIBRARY_NAME).canonicalize().unwrap();
        assert_eq!(
            p.env,
            vec![
                (
                    "LD_PRELOAD".into(),
                    format!("{}:libother.so", lib.display())
                ),
                ("LITESTREAM_CONFIG".into(), cfg.display().to_string()),
            ]
        );
    }

    #[test]
    fn plan_errors_say_what_to_do() {
        let none = |_: &str| None;
        let env = Env {
            var: &none,
            exe: Some(PathBuf::from("/nonexistent/bin/litestream")),
        };
        let e = plan(&args(&["--"]), &env).unwrap_err().to_string();
        assert!(e.contains("no command given"), "{e}");
        let e = plan(&args(&["--", "true"]), &env).unwrap_err().to_string();
        assert!(
            e.contains("-library PATH") && e.contains(LIBRARY_ENV),
            "{e}"
        );
        let e = plan(&args(&["-library", "/nonexistent/x.so", "true"]), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("library not found: /nonexistent/x.so"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(LIBRARY_NAME);
        std::fs::write(&lib, b"").unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "dbs: [{path: }]\nlogging: {level: loud}\n").unwrap();
        let e = plan(
            &args(&[
                "-library",
                &lib.to_string_lossy(),
                "-config",
                &bad.to_string_lossy(),
                "true",
            ]),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.yml"), "names the file: {e}");
    }

    #[test]
    fn exit_codes() {
        let mut err = Vec::new();
        let plan = |p: &str, a: &[&str]| Plan {
            program: p.into(),
            args: args(a),
            env: vec![],
        };
        // Without installing handlers in the test process.
        assert_eq!(
            run_child(&plan("sh", &["-c", "exit 7"]), &mut err, false),
            7
        );
        assert_eq!(
            run_child(&plan("sh", &["-c", "kill -TERM $$"]), &mut err, false),
            128 + 15
        );
        assert_eq!(
            run_child(&plan("/nonexistent/cmd", &[]), &mut err, false),
            127
        );
        assert!(String::from_utf8_lossy(&err).contains("cannot run \"/nonexistent/cmd\""));
    }
}

//! Child processes: the `sqlite3` shell, Debian's python, our CLI, the official binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::paths::{official_bin, our_bin, python3, so_load_arg, sqlite3_shell};
use crate::wait::wait_until;

/// What a finished child printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub what: String,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics (showing both streams) unless the child exited 0.
    #[track_caller]
    pub fn ok(self) -> Output {
        if !self.status.success() {
            panic!("{self}");
        }
        self
    }

    /// Panics unless the child exited 0 and wrote nothing to stderr.
    #[track_caller]
    pub fn clean(self) -> Output {
        if !self.status.success() || !self.stderr.trim().is_empty() {
            panic!("expected a clean run: {self}");
        }
        self
    }

    /// The exit code (None when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ended with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000)
        )
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs `cmd` with `stdin` fed from `input`, capturing both streams.
pub fn run_with_input(mut cmd: Command, what: &str, input: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Feed stdin from a thread so a child that prints a lot cannot deadlock us.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    let _ = feeder.join();
    Output {
        what: what.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

/// Runs the system `sqlite3` shell (`-batch`, no database argument) with `script` on stdin and
/// the extra environment `env`. The script usually starts with `.load` and `.open`
/// (see [`sqlite3_ext`]).
pub fn sqlite3(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(sqlite3_shell());
    cmd.arg("-batch");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, "sqlite3 shell", script.as_bytes())
}

/// Runs `sql` with the plain `sqlite3` shell (no extension) directly on `db`, with a busy
/// timeout (another process such as the official `replicate` may hold a lock) and `.bail on`.
pub fn sqlite3_plain(db: &Path, sql: &str) -> Output {
    let mut cmd = Command::new(sqlite3_shell());
    cmd.arg("-batch").arg(db);
    let script = format!(".timeout 20000\n.bail on\n{sql}\n");
    run_with_input(cmd, &format!("sqlite3 {}", db.display()), script.as_bytes())
}

/// A shell script prefix that loads the extension and opens `uri` through it
/// (`uri` is e.g. `file:/abs/app.db?vfs=litestream`); `.bail on` makes any SQL error fatal.
pub fn ext_prefix(uri: &str) -> String {
    format!(".bail on\n.load {}\n.open {uri}\n", so_load_arg())
}

/// Runs `body` in the shell on `uri` opened through the extension, with `LITESTREAM_CONFIG`
/// set to `config` when given.
pub fn sqlite3_ext(uri: &str, config: Option<&Path>, body: &str) -> Output {
    let script = format!("{}{body}\n", ext_prefix(uri));
    match config {
        Some(c) => sqlite3(&script, &[("LITESTREAM_CONFIG", c)]),
        None => sqlite3(&script, &[]),
    }
}

/// Runs a Python snippet with Debian's `/usr/bin/python3`. `args` become `sys.argv[1:]`.
/// The snippet can use `SO` (a global, the `load_extension` argument) and `ARGS`.
pub fn python(code: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = python_command(code, args, env);
    cmd.stdin(Stdio::null());
    run_with_input(cmd, "python3", b"")
}

/// Python lines for [`python`] snippets: load the extension (`SO`) through a first, in-memory
/// connection, which makes it SQLite's default VFS for the configured databases.
pub const PY_LOAD_EXTENSION: &str = "\
boot = sqlite3.connect(\":memory:\")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
";

/// The command behind [`python`], for callers that need a long-running child.
pub fn python_command(code: &str, args: &[&str], env: &[(&str, &Path)]) -> Command {
    let prelude = format!(
        "import sys, os, sqlite3\nSO = {so:?}\nARGS = sys.argv[1:]\n",
        so = so_load_arg()
    );
    let mut cmd = Command::new(python3());
    cmd.arg("-u").arg("-c").arg(format!("{prelude}{code}"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs our CLI with `args`.
pub fn run_ours(args: &[&str]) -> Output {
    let mut cmd = Command::new(our_bin());
    cmd.args(args);
    run_with_input(cmd, &format!("litestream (ours) {}", args.join(" ")), b"")
}

/// Runs the official Litestream binary with `args` (always without `AWS_CA_BUNDLE`: with it
/// set, 0.5.17 refuses every S3 operation).
pub fn run_official(args: &[&str]) -> Output {
    let mut cmd = Command::new(official_bin());
    cmd.args(args).env_remove("AWS_CA_BUNDLE");
    run_with_input(
        cmd,
        &format!("litestream (official) {}", args.join(" ")),
        b"",
    )
}

/// `litestream restore -o out url` with our CLI; panics with its output unless it succeeds.
#[track_caller]
pub fn restore_ours(url: &str, out: &Path) -> Output {
    let o = run_ours(&["restore", "-o", &out.to_string_lossy(), url]).ok();
    assert!(
        out.is_file(),
        "our restore exited 0 but wrote no {}: {o}",
        out.display()
    );
    o
}

/// `litestream restore -o out url` with the official binary; panics unless it succeeds.
#[track_caller]
pub fn restore_official(url: &str, out: &Path) -> Output {
    let o = run_official(&["restore", "-o", &out.to_string_lossy(), url]).ok();
    assert!(
        out.is_file(),
        "official restore exited 0 but wrote no {}: {o}",
        out.display()
    );
    o
}

/// `litestream replicate` (the official binary's, or ours in sidecar mode) running as a child
/// process. Stopped with SIGINT by [`Replicator::stop`] (the way an operator stops it); killed
/// if dropped while running.
pub struct Replicator {
    child: Option<Child>,
    log: PathBuf,
    who: &'static str,
}

impl Replicator {
    /// Official `litestream replicate -config <config>`; stdout+stderr go to `log`.
    pub fn with_config(config: &Path, log: &Path) -> Replicator {
        Self::spawn(
            official_bin(),
            &["replicate", "-config", &config.to_string_lossy()],
            log,
        )
    }

    /// Official `litestream replicate <db> <url>`; stdout+stderr go to `log`.
    pub fn with_url(db: &Path, url: &str, log: &Path) -> Replicator {
        Self::spawn(
            official_bin(),
            &["replicate", &db.to_string_lossy(), url],
            log,
        )
    }

    /// Our `litestream replicate ARGS...` (sidecar mode without `-exec`); output to `log`.
    pub fn ours(args: &[&str], log: &Path) -> Replicator {
        let mut all = vec!["replicate"];
        all.extend_from_slice(args);
        Self::spawn(our_bin(), &all, log)
    }

    fn spawn(bin: PathBuf, args: &[&str], log: &Path) -> Replicator {
        let who = if bin == official_bin() {
            "official litestream replicate"
        } else {
            "our litestream replicate"
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log handle");
        let child = Command::new(bin)
            .args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("LITESTREAM_CONFIG")
            .env_remove("LD_PRELOAD")
            .env("LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {who}: {e}"));
        Replicator {
            child: Some(child),
            log: log.to_path_buf(),
            who,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has already exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("replicator already stopped");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited early with {status}; log:\n{}",
                self.who,
                self.log()
            );
        }
    }

    /// Sends SIGINT and waits (up to 60 s, then SIGKILL) for a clean exit; returns the log.
    /// Panics if it had to be killed or exited with an error.
    #[track_caller]
    pub fn stop(self) -> String {
        self.stop_with(libc::SIGINT)
    }

    /// [`Replicator::stop`] with another signal (SIGTERM, as a supervisor sends).
    #[track_caller]
    pub fn stop_with(mut self, sig: libc::c_int) -> String {
        let who = self.who;
        let mut child = self.child.take().expect("replicator already stopped");
        signal(&child, sig);
        let mut status = None;
        wait_until(Duration::from_secs(60), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let log = self.log();
        match status {
            Some(s) if s.success() => log,
            Some(s) => panic!("{who} exited with {s} after signal {sig}; log:\n{log}"),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{who} ignored signal {sig} for 60 s; log:\n{log}")
            }
        }
    }

    /// `kill -9`, then reaps it; returns the log.
    pub fn kill9(mut self) -> String {
        let mut child = self.child.take().expect("replicator already stopped");
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        self.log()
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `sig` to `pid`, a process this test started (directly or through a server it started,
/// e.g. a pre-forking server's worker), which must still exist.
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid the caller vouches is a live process it started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Sends `sig` to a child that has not been reaped yet.
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of our own child, which is not reaped yet (we hold `Child`).
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

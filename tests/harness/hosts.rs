//! Real host programs (Node, Python, Go, Rust with a bundled SQLite) writing through the
//! extension. Each host program lives under `tests/hosts/`; the toolchains and packages they
//! need are installed by `scripts/setup-hosts.sh` into `<workspace>/.hosts/` (ignored by git),
//! or `LITESTREAM_HOSTS_DIR`. A missing host fails the test saying how to install it.
//!
//! Every host program runs one scenario and prints `key=value` lines: it loads the extension
//! into a first in-memory connection, opens the configured database by its plain path (no
//! `?vfs=`), writes, calls `PRAGMA litestream.checkpoint` and `litestream_lag()` through its
//! own API, writes once more, then writes a database the configuration does not name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::checks::{assert_restores_to, query_ids};
use crate::db::query;
use crate::paths::workspace_root;
use crate::procs::{run_with_input, Output};
use crate::replica::Config;
use crate::scratch::Scratch;

/// Where `scripts/setup-hosts.sh` installs the hosts.
pub fn hosts_dir() -> PathBuf {
    match std::env::var_os("LITESTREAM_HOSTS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join(".hosts"),
    }
}

/// The host programs' sources, `tests/hosts/<rel>`.
pub fn host_source(rel: &str) -> PathBuf {
    workspace_root().join("tests/hosts").join(rel)
}

/// `path` if it exists; otherwise panics naming `what` and how to install it.
#[track_caller]
pub fn require(path: PathBuf, what: &str) -> PathBuf {
    if !path.exists() {
        panic!(
            "{what} is not installed ({} is missing). Install the test hosts with \
             `scripts/setup-hosts.sh` from the workspace root (`.ci/run` and `make test` run it; \
             it needs node/npm, python3-venv, golang-go and golang-github-mattn-go-sqlite3-dev \
             from apt, and a C toolchain)",
            path.display()
        );
    }
    path
}

/// The program `name` found on PATH; otherwise panics saying which package provides it.
#[track_caller]
pub fn require_on_path(name: &str, package: &str) -> PathBuf {
    crate::paths::find_on_path(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: install {package} (`.ci/run` installs it)")
    })
}

/// One replicated database, one unmanaged one and the configuration naming the first.
pub struct HostFixture {
    pub scratch: Scratch,
    pub db: PathBuf,
    pub other: PathBuf,
    pub replica: PathBuf,
    pub config: PathBuf,
}

impl HostFixture {
    pub fn new(label: &str) -> HostFixture {
        let scratch = Scratch::new(label);
        let db = scratch.join("app.db");
        let other = scratch.join("other.db");
        let replica = scratch.join("replica");
        let config = Config::new()
            .db(&db, &replica)
            .write(&scratch.join("litestream.yml"));
        HostFixture {
            scratch,
            db,
            other,
            replica,
            config,
        }
    }

    /// Runs `cmd` with `LITESTREAM_CONFIG` set and returns what it printed, `key=value` lines
    /// parsed; panics (showing both streams) unless it exited 0.
    #[track_caller]
    pub fn run(&self, mut cmd: Command, what: &str) -> HostReport {
        cmd.env("LITESTREAM_CONFIG", &self.config)
            .current_dir(self.scratch.path());
        let out = run_with_input(cmd, what, b"").ok();
        HostReport::parse(out)
    }

    /// The checks every host passes: the database replicated (WAL mode, checkpoint and lag
    /// answered), restored equal by our CLI and the official binary, `rows` rows in `t`; the
    /// unmanaged database left alone.
    #[track_caller]
    pub fn assert_scenario(&self, r: &HostReport, label: &str, rows: i64) {
        eprintln!("{label}: SQLite {}", r.get("sqlite_version"));
        assert_eq!(r.get("journal_mode"), "wal", "{r}");
        let cp = r.get("checkpoint");
        assert!(
            cp.starts_with(r#"{"replicated_txid":""#) && cp.contains(r#""busy":0"#),
            "PRAGMA litestream.checkpoint answered {cp:?}: {r}"
        );
        let lag: f64 = r
            .get("lag")
            .parse()
            .unwrap_or_else(|_| panic!("litestream_lag() is not a number: {r}"));
        assert_eq!(lag, 0.0, "caught up right after the checkpoint: {r}");
        // Unmanaged: left in rollback mode, no staging, no lag.
        assert_eq!(r.get("other_journal_mode"), "delete", "{r}");
        assert!(
            matches!(r.get("other_lag"), "NULL" | "None" | "null"),
            "litestream_lag() on an unmanaged database: {r}"
        );
        let name = self.other.file_name().unwrap().to_string_lossy();
        let meta = self.other.with_file_name(format!(".{name}-litestream"));
        assert!(!meta.exists(), "{} was created: {r}", meta.display());
        assert_eq!(query(&self.other, "SELECT a FROM x;").trim(), "1");

        assert_eq!(query_ids(&self.db, "SELECT count(*) FROM t;"), vec![rows]);
        assert_restores_to(&self.scratch, &self.replica, &self.db, label);
    }
}

/// What a host program printed.
pub struct HostReport {
    pub out: Output,
    pub values: BTreeMap<String, String>,
}

impl HostReport {
    fn parse(out: Output) -> HostReport {
        let values = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        HostReport { out, values }
    }

    /// The value printed for `key`; panics when the host printed none.
    #[track_caller]
    pub fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the host printed no `{key}=` line: {}", self.out))
    }
}

impl std::fmt::Display for HostReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.out)
    }
}

/// `path` as a string argument for a host program.
pub fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

//! The five measurements of issue 7, the tenants benchmark of issue 14, and what they share.

pub mod cost;
pub mod lag;
pub mod memory;
pub mod restore;
pub mod tenants;
pub mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::env::Tools;
use crate::error::{failed, Context, Result};
use crate::http::Proxy;
use crate::procs::{self, Moto, Replica, Sidecar};
use crate::watch::is_ltx_name;

/// How long a freshly started sidecar gets to ship its first L0 file (it syncs every
/// second; more on a loaded machine).
const SIDECAR_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 emulator and the counting proxy in front of it.
pub struct S3 {
    pub moto: Moto,
    pub proxy: Proxy,
}

pub struct Ctx {
    pub tools: Tools,
    pub work: PathBuf,
    pub quick: bool,
    pub s3: Option<S3>,
}

impl Ctx {
    /// An empty directory `work/<name>`.
    pub fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.work.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        Ok(d)
    }

    pub fn s3(&self) -> Result<&S3> {
        self.s3
            .as_ref()
            .ok_or_else(|| failed("S3 emulator", "not running"))
    }
}

/// Creates `db` with plain SQLite in WAL mode with the benchmark schema, so every contender
/// starts from the same file (and the sidecar has a database to attach to).
pub fn create_db(db: &Path) -> Result<()> {
    let conn = Connection::open(db).ctx(|| format!("create {}", db.display()))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
        .ctx(|| "journal_mode=WAL".to_string())?;
    crate::worker::schema(&conn)
}

/// LTX files of a file replica's level directory.
pub fn list_level(replica: &Path, level: u32) -> Vec<PathBuf> {
    let dir = replica.join("ltx").join(level.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| is_ltx_name(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Proxy log entries for L0 uploads under `prefix`: (acknowledged at, body).
pub fn s3_l0_uploads(proxy: &Proxy, prefix: &str) -> Vec<(u64, Vec<u8>)> {
    let want = format!("/{}/{prefix}/0000/", procs::S3_BUCKET);
    proxy
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with(&want) && l.status == 200)
        .filter_map(|l| l.l0_body.map(|b| (l.t_ack, b)))
        .collect()
}

/// Starts the official sidecar on `db` → `replica` and waits for its first L0 file.
pub fn start_sidecar(
    ctx: &Ctx,
    dir: &Path,
    db: &Path,
    replica: &Replica,
    top: &str,
) -> Result<Sidecar> {
    start_replicate(ctx, &ctx.tools.official, dir, db, replica, "1s", top)
}

/// Our `litestream replicate` in sidecar mode (following a database no extension writes),
/// with `sync` as its sync interval.
pub fn start_our_sidecar(
    ctx: &Ctx,
    dir: &Path,
    db: &Path,
    replica: &Replica,
    sync: &str,
) -> Result<Sidecar> {
    start_replicate(ctx, &ctx.tools.ours, dir, db, replica, sync, "")
}

fn start_replicate(
    ctx: &Ctx,
    bin: &Path,
    dir: &Path,
    db: &Path,
    replica: &Replica,
    sync: &str,
    top: &str,
) -> Result<Sidecar> {
    let cfg = dir.join("sidecar.yml");
    procs::write_config(&cfg, db, replica, sync, top)?;
    let log = dir.join("sidecar.log");
    let sc = Sidecar::start(bin, &cfg, &log)?;
    // Ours follows the database once it holds the stager lock; it ships the first image with
    // the first commit it sees (an idle, never replicated database has nothing in its WAL).
    let ours = bin == ctx.tools.ours;
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock = db
        .with_file_name(format!(".{name}-liblitestream"))
        .join("writer.lock");
    let ready = procs::wait_for(SIDECAR_READY_TIMEOUT, || match replica {
        _ if ours => lock.exists(),
        Replica::File(p) => !list_level(p, 0).is_empty(),
        Replica::S3 { prefix, .. } => ctx
            .s3
            .as_ref()
            .is_some_and(|s| !s3_l0_uploads(&s.proxy, prefix).is_empty()),
    });
    if !ready {
        return Err(failed(
            "litestream replicate",
            format!(
                "no first L0 file within {SIDECAR_READY_TIMEOUT:?}; see {}",
                log.display()
            ),
        ));
    }
    Ok(sc)
}

/// `s` as a worker argument.
pub fn arg(s: impl ToString) -> String {
    s.to_string()
}

/// Rotates `items` by `round` so that each contender goes first in turn.
pub fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left(round % n);
    }
    v
}

/// The error of a worker that failed (e.g. our side refusing an S3 replica): the
/// extension's own reason from the worker's log when it logged one (`error=…`), else the
/// worker's message.
pub fn worker_error(v: &serde_json::Value, log: &Path) -> Option<String> {
    let msg = v.get("error").and_then(|e| e.as_str())?;
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    let reason = logged
        .lines()
        .filter(|l| l.contains("ERROR"))
        .find_map(|l| l.split_once("error=").map(|(_, r)| r.trim().to_string()));
    Some(reason.unwrap_or_else(|| msg.to_string()))
}

/// A short reason for a table cell: the last clause of the first line (error chains end with
/// the cause, e.g. "S3 replicas are not supported yet; use a file replica"), without URLs.
pub fn short(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("");
    let tail = line.rsplit(": ").next().unwrap_or(line);
    let cut: String = tail.chars().take(120).collect();
    cut.replace('|', "/")
}

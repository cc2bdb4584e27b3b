//! Child processes: the worker (this binary in `worker` mode), the official `litestream
//! replicate` sidecar, restores, and the S3 emulator.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::env::Tools;
use crate::error::{failed, Context, Result};
use crate::sys::{self, mono_ns, Exit};

/// How long a sidecar gets to finish its shutdown sync after SIGTERM before it is killed.
const SIDECAR_STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the S3 emulator gets to start answering.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Credentials for the emulator (it accepts any).
pub const S3_KEY_ID: &str = "bench";
pub const S3_SECRET: &str = "bench-secret";
pub const S3_REGION: &str = "us-east-1";
pub const S3_BUCKET: &str = "bench";

/// Where a replica lives.
#[derive(Debug, Clone)]
pub enum Replica {
    File(PathBuf),
    /// `s3://bench/<prefix>` on the emulator (or the proxy) at `127.0.0.1:<port>`.
    S3 {
        port: u16,
        prefix: String,
    },
}

impl Replica {
    /// The replica URL, as both `restore` commands take it.
    pub fn url(&self) -> String {
        match self {
            Replica::File(p) => format!("file://{}", p.display()),
            Replica::S3 { port, prefix } => format!(
                "s3://{S3_BUCKET}/{prefix}?endpoint=http://127.0.0.1:{port}&region={S3_REGION}&forcePathStyle=true"
            ),
        }
    }
}

/// A `litestream.yml` both contenders read: one database, one replica.
/// `top`: extra top-level YAML (e.g. `levels:`).
pub fn write_config(
    path: &Path,
    db: &Path,
    replica: &Replica,
    sync_interval: &str,
    top: &str,
) -> Result<()> {
    let rep = match replica {
        Replica::File(p) => format!("      type: file\n      path: {}\n", p.display()),
        Replica::S3 { port, prefix } => format!(
            "      type: s3\n      bucket: {S3_BUCKET}\n      path: {prefix}\n      endpoint: http://127.0.0.1:{port}\n      region: {S3_REGION}\n      force-path-style: true\n      access-key-id: {S3_KEY_ID}\n      secret-access-key: {S3_SECRET}\n"
        ),
    };
    let yaml = format!(
        "logging:\n  level: warn\n{top}dbs:\n  - path: {}\n    replica:\n{rep}      sync-interval: {sync_interval}\n",
        db.display()
    );
    std::fs::write(path, yaml).ctx(|| format!("write {}", path.display()))
}

/// Environment for children that talk to the emulator: credentials, and no `AWS_CA_BUNDLE`
/// (the official binary fails every S3 call when it is set).
fn s3_env(cmd: &mut Command) {
    cmd.env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .env("AWS_REGION", S3_REGION)
        .env_remove("AWS_PROFILE");
}

fn log_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .ctx(|| format!("open log {}", path.display()))
}

/// Runs this binary as `worker <args>` with `LITESTREAM_CONFIG=config` (for the extension);
/// the worker writes its JSON result to `out`. Returns the result and the child's exit info.
pub fn run_worker(
    tools: &Tools,
    args: &[String],
    config: Option<&Path>,
    out: &Path,
    log: &Path,
) -> Result<(serde_json::Value, Exit)> {
    let exe = std::env::current_exe().ctx(|| "locate the bench binary".to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--so")
        .arg(tools.so_load_arg())
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    s3_env(&mut cmd);
    match config {
        Some(c) => cmd.env("LITESTREAM_CONFIG", c),
        None => cmd.env_remove("LITESTREAM_CONFIG"),
    };
    let _ = std::fs::remove_file(out);
    let what = || format!("worker {}", args.join(" "));
    let child = cmd.spawn().ctx(what)?;
    let exit = sys::wait4(child.id()).ctx(what)?;
    std::mem::forget(child); // reaped by wait4
    let text = std::fs::read_to_string(out).unwrap_or_default();
    if text.is_empty() {
        let how = match (exit.code, exit.signal) {
            (Some(c), _) => format!("exited with {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".to_string(),
        };
        return Err(failed(
            what(),
            format!("{how} without a result; see {}", log.display()),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&text).ctx(what)?;
    Ok((v, exit))
}

/// A running `litestream replicate` sidecar: the official one, or ours in sidecar mode.
pub struct Sidecar {
    child: Option<Child>,
}

impl Sidecar {
    /// Starts `bin replicate -config config` (`bin`: `tools.official` or `tools.ours`).
    pub fn start(bin: &Path, config: &Path, log: &Path) -> Result<Sidecar> {
        let mut cmd = Command::new(bin);
        cmd.arg("replicate")
            .arg("-config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file(log)?)
            .stderr(log_file(log)?);
        s3_env(&mut cmd);
        let child = cmd
            .spawn()
            .ctx(|| format!("start litestream replicate -config {}", config.display()))?;
        Ok(Sidecar { child: Some(child) })
    }

    /// SIGTERM (the sidecar syncs what is left), waits; returns its exit info (peak RSS).
    pub fn stop(mut self) -> Result<Exit> {
        let Some(child) = self.child.take() else {
            return Err(failed("stop sidecar", "already stopped"));
        };
        let pid = child.id();
        std::mem::forget(child); // reaped by wait4 below
        sys::kill(pid, sys::SIGTERM).ctx(|| "SIGTERM the sidecar".to_string())?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(sys::wait4(pid));
        });
        match rx.recv_timeout(SIDECAR_STOP_TIMEOUT) {
            Ok(r) => r.ctx(|| "wait for the sidecar".to_string()),
            Err(_) => {
                let _ = sys::kill(pid, sys::SIGKILL);
                let r = rx.recv().map_err(|e| failed("wait for the sidecar", e))?;
                r.ctx(|| "wait for the killed sidecar".to_string())
            }
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `<bin> restore -o out <url>` and returns the wall-clock seconds, or the error output.
pub fn restore(
    bin: &Path,
    url: &str,
    out: &Path,
    log: &Path,
) -> Result<std::result::Result<f64, String>> {
    for suffix in ["", "-wal", "-shm", ".tmp"] {
        let mut p = out.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let mut cmd = Command::new(bin);
    cmd.arg("restore").arg("-o").arg(out).arg(url);
    s3_env(&mut cmd);
    let t0 = mono_ns();
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("run {} restore", bin.display()))?;
    let secs = (mono_ns() - t0) as f64 / 1e9;
    let mut lf = log_file(log)?;
    use std::io::Write;
    let _ = writeln!(
        lf,
        "== {} restore {url}: {} in {secs:.3}s\n{}{}",
        bin.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.success() && out.is_file() {
        Ok(Ok(secs))
    } else {
        Ok(Err(String::from_utf8_lossy(&o.stderr).trim().to_string()))
    }
}

/// The S3 emulator (moto_server) on a free loopback port, with the bucket created.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start(tools: &Tools, log: &Path) -> Result<Moto> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .ctx(|| "find a free port".to_string())?
            .port();
        let child = Command::new(&tools.moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file(log)?)
            .stderr(log_file(log)?)
            .spawn()
            .ctx(|| format!("start {}", tools.moto.display()))?;
        let moto = Moto { port, child };
        let deadline = mono_ns() + MOTO_START_TIMEOUT.as_nanos() as u64;
        loop {
            if let Ok((200, _)) = crate::http::request(
                port,
                "PUT",
                &format!("/{S3_BUCKET}"),
                &[],
                crate::http::Body::Empty,
            ) {
                return Ok(moto);
            }
            if mono_ns() > deadline {
                return Err(failed(
                    "moto_server",
                    format!("not answering; see {}", log.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Uploads `file` as `key` (the emulator accepts unsigned uploads).
    pub fn put_file(&self, key: &str, file: &Path) -> Result<()> {
        let (status, body) = crate::http::request(
            self.port,
            "PUT",
            &format!("/{S3_BUCKET}/{key}"),
            &[("Content-Type", "application/octet-stream")],
            crate::http::Body::File(file),
        )?;
        if status != 200 {
            return Err(failed(
                format!("upload {key}"),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            ));
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; true if it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = mono_ns() + timeout.as_nanos() as u64;
    loop {
        if cond() {
            return true;
        }
        if mono_ns() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! Where the contenders are, and what machine this is.

use std::path::{Path, PathBuf};

use crate::error::{failed, Result};

/// The workspace root (the directory holding the root `Cargo.toml` and `Makefile`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

fn locate(var: &str, default: PathBuf, what: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(failed(
            what,
            format!(
                "not found at {} (set {var}, or run `make bench`, which builds it and installs \
                 the test peers)",
                path.display()
            ),
        ))
    }
}

/// The contenders and tools of one run.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `liblitestream.so` (release build).
    pub so: PathBuf,
    /// Our `litestream` CLI (release build).
    pub ours: PathBuf,
    /// The official Litestream 0.5.17 binary.
    pub official: PathBuf,
    /// The S3 emulator.
    pub moto: PathBuf,
}

impl Tools {
    pub fn locate() -> Result<Tools> {
        let venv = workspace_root().join(".venv/bin");
        Ok(Tools {
            so: locate(
                "LITESTREAM_SO",
                target_dir().join("release/liblitestream.so"),
                "the extension liblitestream.so",
            )?,
            ours: locate(
                "LITESTREAM_BIN",
                target_dir().join("release/litestream"),
                "our litestream CLI",
            )?,
            official: locate(
                "LITESTREAM_OFFICIAL",
                venv.join("litestream"),
                "the official litestream 0.5.17",
            )?,
            moto: locate("LITESTREAM_MOTO", venv.join("moto_server"), "moto_server")?,
        })
    }

    /// The `load_extension` argument: the path without `.so`, so that SQLite derives the
    /// entry point `sqlite3_litestream_init` from the file name.
    pub fn so_load_arg(&self) -> String {
        let s = self.so.to_string_lossy().into_owned();
        s.strip_suffix(".so").map(str::to_owned).unwrap_or(s)
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// "CPU model, N cores, kernel, RAM, SQLite version": written into results.json.
pub fn machine_description() -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    format!(
        "{model}, {cores} cores, Linux {kernel}, {mem_gib:.0} GiB RAM, SQLite {}",
        rusqlite::version()
    )
}

/// The 1-minute load average when the run started (other jobs share the machine).
pub fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

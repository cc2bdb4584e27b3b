//! The writer process: `litestream-bench worker <mode> --key value …`.
//!
//! Every contender's writes run in a fresh child process, so that "native" never has the
//! extension loaded, each process's peak RSS can be read with `wait4`, and the extension's
//! exit-time flush is part of the measured process. The result is one JSON document written
//! to `--out`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use crate::error::{failed, Context, Result};
use crate::ltx::marker;
use crate::sys::mono_ns;

/// Bytes of the payload pool rows are cut from.
const POOL_SIZE: usize = 4 << 20;
/// Row size of the throughput workloads: a small record, as in typical OLTP inserts.
pub const TPS_ROW_BYTES: usize = 100;
/// Rows per transaction of the batch workload.
pub const BATCH_ROWS: usize = 1000;
/// Row size of the big-transaction and fill workloads: big enough that SQLite's per-row
/// overhead does not dominate, small enough to stay off overflow pages (4 KiB pages).
pub const BIG_ROW_BYTES: usize = 4000;

pub struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Result<Args> {
        let mut m = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| failed("worker arguments", format!("expected --key, got {k}")))?;
            let v = it
                .next()
                .ok_or_else(|| failed("worker arguments", format!("--{key} needs a value")))?;
            m.insert(key.to_string(), v.clone());
        }
        Ok(Args(m))
    }

    pub fn str(&self, k: &str) -> Result<&str> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| failed("worker arguments", format!("--{k} is required")))
    }

    pub fn num(&self, k: &str) -> Result<u64> {
        self.str(k)?
            .parse()
            .map_err(|e| failed(format!("--{k}"), e))
    }

    pub fn num_or(&self, k: &str, default: u64) -> Result<u64> {
        if self.0.contains_key(k) {
            self.num(k)
        } else {
            Ok(default)
        }
    }
}

/// Entry point of `worker <mode> …`; returns the process exit code.
pub fn main(raw: &[String]) -> i32 {
    let Some((mode, rest)) = raw.split_first() else {
        eprintln!("worker: missing mode");
        return 2;
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("worker: {e}");
            return 2;
        }
    };
    let out = match args.str("out") {
        Ok(o) => PathBuf::from(o),
        Err(e) => {
            eprintln!("worker: {e}");
            return 2;
        }
    };
    let result = match mode.as_str() {
        "tps" => tps(&args),
        "paced" => paced(&args),
        "rss" => rss(&args),
        "fill" => fill(&args),
        "tenants" => crate::tenants_worker::run(&args),
        other => Err(failed("worker", format!("unknown mode {other}"))),
    };
    let (doc, code) = match result {
        Ok(v) => (v, 0),
        Err(e) => {
            eprintln!("worker {mode}: {e}");
            (json!({ "error": e.to_string() }), 1)
        }
    };
    if let Err(e) = std::fs::write(&out, doc.to_string()) {
        eprintln!("worker: write {}: {e}", out.display());
        return 2;
    }
    code
}

/// A pool of half-random, half-text bytes: LZ4 compresses it to roughly 60 %, like typical
/// application data, so neither contender's compression gets an unrealistic input.
fn pool() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let text = b"the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet. ";
    let mut v = Vec::with_capacity(POOL_SIZE);
    while v.len() < POOL_SIZE {
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&text[..64]);
    }
    v.truncate(POOL_SIZE);
    v
}

/// Cuts successive `len`-byte rows out of the pool.
struct Rows {
    pool: Vec<u8>,
    at: usize,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            pool: pool(),
            at: 0,
        }
    }

    fn next(&mut self, len: usize) -> &[u8] {
        if self.at + len > self.pool.len() {
            self.at = (self.at * 7 + 13) % 4096; // a different alignment on each pass
        }
        let s = self.at;
        self.at += len;
        &self.pool[s..s + len]
    }
}

pub fn file_uri(path: &Path) -> String {
    let mut s = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3f"),
            '#' => s.push_str("%23"),
            '&' => s.push_str("%26"),
            _ => s.push(c),
        }
    }
    s
}

/// Loads the extension from `so` into this process (through a throwaway connection).
pub fn load_extension(so: &str) -> Result<()> {
    let boot = Connection::open_in_memory().ctx(|| "in-memory connection".to_string())?;
    // SAFETY: loads this workspace's own extension into this process; loading stays
    // enabled only on this bootstrap connection.
    unsafe {
        boot.load_extension_enable()
            .ctx(|| "enable extension loading".to_string())?;
        boot.load_extension(so, None::<&str>)
            .ctx(|| format!("load_extension({so})"))?;
    }
    Ok(())
}

/// Opens `--db`: plain SQLite, or (`--ext 1`) through the extension loaded from `--so`, which
/// reads its configuration from `LITESTREAM_CONFIG`.
fn open(args: &Args) -> Result<Connection> {
    let db = PathBuf::from(args.str("db")?);
    let ext = args.num_or("ext", 0)? == 1;
    let conn = if ext {
        load_extension(args.str("so")?)?;
        let uri = format!("{}?vfs=litestream", file_uri(&db));
        Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx(|| format!("open {uri}"))?
    } else {
        Connection::open(&db).ctx(|| format!("open {}", db.display()))?
    };
    conn.busy_timeout(Duration::from_secs(10))
        .ctx(|| "busy_timeout".to_string())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx(|| "journal_mode=WAL".to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(failed("journal_mode=WAL", format!("got {mode}")));
    }
    schema(&conn)?;
    Ok(conn)
}

/// The benchmark schema (also created by the driver before a sidecar starts).
pub fn schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);
         CREATE TABLE IF NOT EXISTS marker(id INTEGER PRIMARY KEY, v BLOB);
         INSERT OR IGNORE INTO marker VALUES (1, x'');",
    )
    .ctx(|| "create the benchmark schema".to_string())
}

fn set_sync(conn: &Connection, sync: &str) -> Result<()> {
    conn.execute_batch(&format!("PRAGMA synchronous={sync}"))
        .ctx(|| format!("synchronous={sync}"))
}

/// Transactions per second for each `--workloads kind:sync,…` (`autocommit` = one row per
/// transaction, `batch` = [`BATCH_ROWS`] rows), each for `--secs-ms` milliseconds.
fn tps(args: &Args) -> Result<serde_json::Value> {
    let conn = open(args)?;
    let dur = Duration::from_millis(args.num("secs-ms")?);
    let mut rows = Rows::new();
    let mut results = Vec::new();
    for w in args.str("workloads")?.split(',') {
        let (kind, sync) = w
            .split_once(':')
            .ok_or_else(|| failed("--workloads", format!("{w}: expected kind:sync")))?;
        set_sync(&conn, sync)?;
        let mut ins = conn
            .prepare_cached("INSERT INTO t(v) VALUES (?1)")
            .ctx(|| "prepare insert".to_string())?;
        let per_txn = if kind == "batch" { BATCH_ROWS } else { 1 };
        let cpu0 = crate::sys::process_cpu_secs();
        let thread0 = crate::sys::thread_cpu_secs();
        let t0 = Instant::now();
        let mut txns = 0u64;
        while t0.elapsed() < dur {
            if per_txn > 1 {
                conn.execute_batch("BEGIN").ctx(|| "BEGIN".to_string())?;
            }
            for _ in 0..per_txn {
                ins.execute([rows.next(TPS_ROW_BYTES)])
                    .ctx(|| format!("{w}: insert"))?;
            }
            if per_txn > 1 {
                conn.execute_batch("COMMIT").ctx(|| "COMMIT".to_string())?;
            }
            txns += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = crate::sys::process_cpu_secs() - cpu0;
        let thread_cpu = crate::sys::thread_cpu_secs() - thread0;
        results.push(json!({
            "workload": kind, "sync": sync, "txns": txns, "secs": secs,
            "cpu_secs": cpu, "thread_cpu_secs": thread_cpu,
        }));
    }
    drop(conn);
    Ok(json!({ "results": results }))
}

/// A steady writer: one commit (a row plus the marker, see `ltx.rs`; none with
/// `--first-commit 0`), `--warmup-ms`, an idle window of `--idle-ms`, then `--count` commits at
/// `--rate` per second, then `--linger-ms` with the database still open (so the last commits
/// ship on the normal schedule, not by the exit-time flush). Reports the windows and each
/// commit's return time (CLOCK_MONOTONIC ns).
fn paced(args: &Args) -> Result<serde_json::Value> {
    let conn = open(args)?;
    set_sync(&conn, args.str("sync").unwrap_or("normal"))?;
    let rate = args.num("rate")?.max(1);
    let count = args.num("count")?;
    let period_ns = 1_000_000_000 / rate;
    let mut rows = Rows::new();
    let mut commit = |k: u64| -> Result<u64> {
        conn.execute_batch("BEGIN").ctx(|| "BEGIN".to_string())?;
        conn.execute("INSERT INTO t(v) VALUES (?1)", [rows.next(TPS_ROW_BYTES)])
            .ctx(|| "insert".to_string())?;
        conn.execute("UPDATE marker SET v = ?1 WHERE id = 1", [marker(k)])
            .ctx(|| "update marker".to_string())?;
        conn.execute_batch("COMMIT").ctx(|| "COMMIT".to_string())?;
        Ok(mono_ns())
    };
    if args.num_or("first-commit", 1)? != 0 {
        commit(0)?;
    }
    std::thread::sleep(Duration::from_millis(args.num_or("warmup-ms", 0)?));
    let idle_start = mono_ns();
    std::thread::sleep(Duration::from_millis(args.num_or("idle-ms", 0)?));
    let idle_end = mono_ns();
    let active_start = mono_ns();
    let mut commits = Vec::with_capacity(count as usize);
    for k in 1..=count {
        let due = active_start + (k - 1) * period_ns;
        let now = mono_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        commits.push(commit(k)?);
    }
    let active_end = mono_ns();
    std::thread::sleep(Duration::from_millis(args.num_or("linger-ms", 0)?));
    drop(conn);
    Ok(json!({
        "idle": [idle_start, idle_end],
        "active": [active_start, active_end],
        "commits": commits,
    }))
}

/// A `/proc/self/status` field in KiB (`VmHWM`, `VmRSS`); 0 when it cannot be read.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `VmHWM` of this process in KiB.
fn vm_hwm_kib() -> u64 {
    status_kib("VmHWM")
}

/// One transaction of `--txn-bytes` bytes of rows, then close. The driver reads the peak
/// RSS of the whole process life (including the extension's exit flush) with `wait4`.
fn rss(args: &Args) -> Result<serde_json::Value> {
    let conn = open(args)?;
    let bytes = args.num("txn-bytes")?;
    let mut rows = Rows::new();
    let t0 = Instant::now();
    conn.execute_batch("BEGIN").ctx(|| "BEGIN".to_string())?;
    {
        let mut ins = conn
            .prepare_cached("INSERT INTO t(v) VALUES (?1)")
            .ctx(|| "prepare insert".to_string())?;
        let mut written = 0u64;
        while written < bytes {
            ins.execute([rows.next(BIG_ROW_BYTES)])
                .ctx(|| "insert".to_string())?;
            written += BIG_ROW_BYTES as u64;
        }
    }
    conn.execute_batch("COMMIT").ctx(|| "COMMIT".to_string())?;
    let commit_secs = t0.elapsed().as_secs_f64();
    let hwm_after_commit = vm_hwm_kib();
    drop(conn);
    Ok(json!({
        "commit_secs": commit_secs,
        "vmhwm_kib_after_commit": hwm_after_commit,
        "vmhwm_kib_after_close": vm_hwm_kib(),
    }))
}

/// Fills a plain database (no extension) with `--bytes` of rows in transactions of
/// `--txn-bytes`, pausing `--pause-ms` between them so that a sidecar makes many L0 files.
fn fill(args: &Args) -> Result<serde_json::Value> {
    let conn = open(args)?;
    let total = args.num("bytes")?;
    let per_txn = args.num("txn-bytes")?;
    let pause = Duration::from_millis(args.num_or("pause-ms", 0)?);
    let mut rows = Rows::new();
    let mut written = 0u64;
    let mut txns = 0u64;
    while written < total {
        conn.execute_batch("BEGIN").ctx(|| "BEGIN".to_string())?;
        {
            let mut ins = conn
                .prepare_cached("INSERT INTO t(v) VALUES (?1)")
                .ctx(|| "prepare insert".to_string())?;
            let mut in_txn = 0u64;
            while in_txn < per_txn && written < total {
                ins.execute([rows.next(BIG_ROW_BYTES)])
                    .ctx(|| "insert".to_string())?;
                in_txn += BIG_ROW_BYTES as u64;
                written += BIG_ROW_BYTES as u64;
            }
        }
        conn.execute_batch("COMMIT").ctx(|| "COMMIT".to_string())?;
        txns += 1;
        std::thread::sleep(pause);
    }
    drop(conn);
    Ok(json!({ "txns": txns, "bytes": written }))
}

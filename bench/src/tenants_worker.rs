//! The tenants worker (`worker tenants --dir D --n N --ext 0|1 --settle-ms S --idle-ms I`):
//! N databases `tNNNN.db` under D in this one process (native SQLite in WAL mode, or through
//! the extension, whose configuration has a directory entry for D), opened, written once,
//! left open and idle, then written again. Reports the time to open all N, the time until every
//! first write was durable (native: when its commit returned; ours: when the replica
//! acknowledged it, `litestream_lag()` = 0), threads, descriptors and RSS while idle, the CPU
//! time of the idle window, and the same durability time for the second write.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use crate::error::{failed, Context, Result};
use crate::sys::mono_ns;
use crate::worker::{file_uri, load_extension, Args};

/// How often the worker asks every connection whether its writes are acknowledged.
const DURABLE_POLL: Duration = Duration::from_millis(50);
/// Longest wait for every write to be acknowledged before the worker gives up: far above the
/// seconds 1000 uploads take, so that only a stuck replication fails the run.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Settled: this many seconds in a row with at most [`QUIET_CPU_SECS`] of CPU each (a wake-up
/// or two, not a compaction round of many databases).
const QUIET_SECS: u32 = 3;
const QUIET_CPU_SECS: f64 = 0.005;

fn open_one(path: &std::path::Path, ext: bool) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let uri = if ext {
        format!("{}?vfs=litestream", file_uri(path))
    } else {
        file_uri(path)
    };
    let c = Connection::open_with_flags(&uri, flags).ctx(|| format!("open {uri}"))?;
    c.busy_timeout(Duration::from_secs(10))
        .ctx(|| "busy_timeout".to_string())?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx(|| format!("{uri}: journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(failed("journal_mode=WAL", format!("{uri}: got {mode}")));
    }
    Ok(c)
}

/// One row in every database (the first call also creates the table).
fn write_all(conns: &[Connection], round: u32) -> Result<()> {
    for (i, c) in conns.iter().enumerate() {
        c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
            .ctx(|| format!("t{i:04}: create table"))?;
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("tenant {i} write {round}")],
        )
        .ctx(|| format!("t{i:04}: insert"))?;
    }
    Ok(())
}

/// Waits until the replica acknowledged every write of every connection (extension only).
fn wait_durable(conns: &[Connection]) -> Result<()> {
    let t0 = Instant::now();
    let mut next = 0;
    while next < conns.len() {
        let lag: f64 = conns[next]
            .query_row("SELECT litestream_lag()", [], |r| r.get(0))
            .ctx(|| format!("t{next:04}: litestream_lag()"))?;
        if lag == 0.0 {
            next += 1;
            continue;
        }
        if t0.elapsed() > DURABLE_TIMEOUT {
            return Err(failed(
                "durability",
                format!("t{next:04} still not acknowledged after {DURABLE_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(DURABLE_POLL);
    }
    Ok(())
}

fn count_dir(path: &str) -> u64 {
    std::fs::read_dir(path).map_or(0, |d| d.count() as u64)
}

fn vm_rss_kib() -> u64 {
    crate::worker::status_kib("VmRSS")
}

pub fn run(args: &Args) -> Result<serde_json::Value> {
    let dir = std::path::PathBuf::from(args.str("dir")?);
    let n = args.num("n")? as usize;
    let ext = args.num_or("ext", 0)? == 1;
    let settle = Duration::from_millis(args.num("settle-ms")?);
    let idle = Duration::from_millis(args.num("idle-ms")?);
    if ext {
        load_extension(args.str("so")?)?;
    }
    let base = (count_dir("/proc/self/fd"), vm_rss_kib());
    let t0 = Instant::now();
    let conns = (0..n)
        .map(|i| open_one(&dir.join(format!("t{i:04}.db")), ext))
        .collect::<Result<Vec<_>>>()?;
    let open_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    write_all(&conns, 1)?;
    let commit_secs = t1.elapsed().as_secs_f64();
    if ext {
        wait_durable(&conns)?;
    }
    let durable_secs = t1.elapsed().as_secs_f64();
    // The work the writes left (compaction, L0 retention) finishes before the idle window:
    // until the process used no CPU for QUIET_SECS in a row, at most `settle`.
    let t_settle = Instant::now();
    let mut quiet = 0;
    while quiet < QUIET_SECS && t_settle.elapsed() < settle {
        let c0 = crate::sys::process_cpu_secs();
        std::thread::sleep(Duration::from_secs(1));
        let busy = crate::sys::process_cpu_secs() - c0 > QUIET_CPU_SECS;
        quiet = if busy { 0 } else { quiet + 1 };
    }
    let settle_secs = t_settle.elapsed().as_secs_f64();
    let threads = count_dir("/proc/self/task");
    let fds = count_dir("/proc/self/fd");
    let rss_kib = vm_rss_kib();
    let cpu0 = crate::sys::process_cpu_secs();
    let idle_start = mono_ns();
    std::thread::sleep(idle);
    let idle_end = mono_ns();
    let idle_cpu_secs = crate::sys::process_cpu_secs() - cpu0;
    let t2 = Instant::now();
    write_all(&conns, 2)?;
    if ext {
        wait_durable(&conns)?;
    }
    let second_durable_secs = t2.elapsed().as_secs_f64();
    drop(conns);
    Ok(json!({
        "n": n,
        "open_secs": open_secs,
        "commit_secs": commit_secs,
        "durable_secs": durable_secs,
        "second_durable_secs": second_durable_secs,
        "threads": threads,
        "settle_secs": settle_secs,
        "fds": fds,
        "fds_before_open": base.0,
        "rss_kib": rss_kib,
        "rss_kib_before_open": base.1,
        "idle": [idle_start, idle_end],
        "idle_cpu_secs": idle_cpu_secs,
    }))
}

//! 6. Tenants (issue 14): N databases in one process — opened, written once, idle, written
//!    again — natively (SQLite in WAL mode) and through the extension replicating all of them
//!    to S3 (moto, behind the counting proxy) with one directory entry (`dir`, `watch: true`).
//!    Measured in one worker process each (`worker tenants`): threads, descriptors and RSS
//!    while idle, CPU of the idle window, S3 requests in it, the time to open all N, and the
//!    time until every database's first (and second) write is durable.

use serde_json::json;

use super::{arg, Ctx};
use crate::error::{failed, Result};
use crate::procs::{self, S3_BUCKET, S3_KEY_ID, S3_REGION, S3_SECRET};
use crate::report::{fmt, Measure, Report};

/// Databases in the full run (the N) and in QUICK.
const N_FULL: usize = 1000;
const N_QUICK: usize = 100;
/// The idle window: the 60 s (QUICK: 5 s).
const IDLE_MS_FULL: u64 = 60_000;
const IDLE_MS_QUICK: u64 = 5_000;
/// Longest wait between the first write being durable and the idle window, for the
/// compaction the write leaves (with the short levels below: L1 at the next 2 s boundary, the
/// first snapshot, L2 at 4 s, L0 retention after 2 s) to finish for every database on the one
/// compactor thread; the worker starts the idle window as soon as the process is quiet.
const SETTLE_MS_FULL: u64 = 900_000;
const SETTLE_MS_QUICK: u64 = 60_000;
/// Compaction settings of the extension's run: short, so that the work a write leaves ends
/// within the settle time and the idle window measures what an idle database costs. (With
/// Litestream's defaults, a write leaves one wake-up per level boundary, up to the hourly L3,
/// and one when its L0 files are 5 minutes old: for the written database only.)
const COMPACTION: &str = "levels:\n  - interval: 2s\n  - interval: 4s\nl0-retention: 2s\nl0-retention-check-interval: 1s\n";

fn config_text(dir: &std::path::Path, port: u16, prefix: &str) -> String {
    format!(
        "logging:\n  level: warn\n{COMPACTION}dbs:\n  - dir: {}\n    pattern: \"t*.db\"\n    watch: true\n    replica:\n      type: s3\n      bucket: {S3_BUCKET}\n      path: {prefix}\n      endpoint: http://127.0.0.1:{port}\n      region: {S3_REGION}\n      force-path-style: true\n      access-key-id: {S3_KEY_ID}\n      secret-access-key: {S3_SECRET}\n",
        dir.display()
    )
}

/// Runs one `worker tenants`: native, or (`s3`: the proxy's port and the key prefix) through
/// the extension replicating every database.
fn one(ctx: &Ctx, n: usize, s3: Option<(u16, &str)>) -> Result<serde_json::Value> {
    let name = if s3.is_some() { "ours" } else { "native" };
    let dir = ctx.fresh_dir(&format!("tenants/{name}"))?;
    let dbs = dir.join("dbs");
    std::fs::create_dir_all(&dbs).map_err(|e| failed("tenants", e))?;
    let config = dir.join("litestream.yml");
    if let Some((port, prefix)) = s3 {
        std::fs::write(&config, config_text(&dbs, port, prefix))
            .map_err(|e| failed("tenants", e))?;
    }
    let settle = match (s3.is_some(), ctx.quick) {
        (false, _) => 0,
        (true, true) => SETTLE_MS_QUICK,
        (true, false) => SETTLE_MS_FULL,
    };
    let args = [
        arg("tenants"),
        arg("--dir"),
        arg(dbs.display()),
        arg("--n"),
        arg(n),
        arg("--ext"),
        arg(u8::from(s3.is_some())),
        arg("--settle-ms"),
        arg(settle),
        arg("--idle-ms"),
        arg(idle_ms(ctx)),
    ];
    let log = dir.join("worker.log");
    let (v, _) = procs::run_worker(
        &ctx.tools,
        &args,
        s3.is_some().then_some(config.as_path()),
        &dir.join("result.json"),
        &log,
    )?;
    if let Some(e) = super::worker_error(&v, &log) {
        return Err(failed(format!("tenants, {name}"), e));
    }
    Ok(v)
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let n = if ctx.quick { N_QUICK } else { N_FULL };
    let s3 = ctx.s3()?;
    let prefix = format!("tenants-{n}");
    let native = one(ctx, n, None)?;
    let ours = one(ctx, n, Some((s3.proxy.port, &prefix)))?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64();
    let window = |v: &serde_json::Value| {
        (
            v["idle"][0].as_u64().unwrap_or(0),
            v["idle"][1].as_u64().unwrap_or(0),
        )
    };
    let (t0, t1) = window(&ours);
    let hours = t1.saturating_sub(t0) as f64 / 3.6e12;
    let want = format!("/{S3_BUCKET}/{prefix}/");
    let idle_requests = s3
        .proxy
        .log()
        .iter()
        .filter(|l| l.t_start >= t0 && l.t_start < t1 && l.path.starts_with(&want))
        .count() as f64;
    let per_db = |k: &str, base: &str, v: &serde_json::Value| -> Option<f64> {
        Some((f(v, k)? - f(v, base)?) / n as f64)
    };
    let idle_secs = |v: &serde_json::Value| {
        let (a, b) = window(v);
        b.saturating_sub(a) as f64 / 1e9
    };
    let cpu_pct = |v: &serde_json::Value| f(v, "idle_cpu_secs").map(|c| 100.0 * c / idle_secs(v));
    let fds_native = per_db("fds", "fds_before_open", &native);
    let fds_ours = per_db("fds", "fds_before_open", &ours);
    let rss_native = per_db("rss_kib", "rss_kib_before_open", &native);
    let rss_ours = per_db("rss_kib", "rss_kib_before_open", &ours);
    let extra = |o: Option<f64>, p: Option<f64>| o.zip(p).map(|(o, p)| o - p);
    let measures = [
        Measure::new(
            "tenants_threads",
            "threads",
            f(&ours, "threads"),
            f(&native, "threads"),
        ),
        Measure::new(
            "tenants_idle_cpu_pct",
            "% of a core",
            cpu_pct(&ours),
            cpu_pct(&native),
        ),
        Measure::new("tenants_fds_per_db", "fds", fds_ours, fds_native),
        Measure::new(
            "tenants_extra_fds_per_db",
            "fds",
            extra(fds_ours, fds_native),
            None,
        ),
        Measure::new("tenants_rss_kib_per_db", "KiB", rss_ours, rss_native),
        Measure::new(
            "tenants_extra_rss_kib_per_db",
            "KiB",
            extra(rss_ours, rss_native),
            None,
        ),
        Measure::new(
            "tenants_idle_requests_per_hour",
            "requests/h",
            Some(idle_requests / hours),
            None,
        ),
        Measure::new(
            "tenants_open_secs",
            "s",
            f(&ours, "open_secs"),
            f(&native, "open_secs"),
        ),
        Measure::new(
            "tenants_first_write_durable_secs",
            "s",
            f(&ours, "durable_secs"),
            f(&native, "durable_secs"),
        ),
        Measure::new(
            "tenants_second_write_durable_secs",
            "s",
            f(&ours, "second_durable_secs"),
            f(&native, "second_durable_secs"),
        ),
    ];
    let mut table = String::from(
        "| measure | native SQLite, WAL | with the extension |\n| --- | --- | --- |\n",
    );
    for (m, label) in measures.iter().zip([
        "threads",
        "CPU while idle, whole process (% of one core)",
        "file descriptors per open database",
        "extra file descriptors per open database",
        "RSS per open database (KiB)",
        "extra RSS per open database (KiB)",
        "S3 requests while idle, per hour",
        "time to open all N (s)",
        "time until every first write is durable (s)",
        "time until every second write is durable (s)",
    ]) {
        table.push_str(&format!(
            "| {label} | {} | {} |\n",
            fmt(m.peer),
            fmt(m.ours)
        ));
    }
    table.push_str(&format!(
        "\nN = {n} databases in one process (the benchmark's Rust worker), each \
         opened, written once (one row), left open and idle for {} s, then written again; the \
         extension replicates all of them to the S3 emulator through one directory entry \
         (`dir`, `pattern: t*.db`, `watch: true`). Native durability is the commit's return; \
         ours is the replica's acknowledgement (`litestream_lag()` = 0). Before the idle window \
         the extension's run waits (at most {} s; it took {} s) until the compaction the first \
         write leaves has ended and the process used no CPU for 3 s (levels of 2 s and 4 s, L0 \
         retention 2 s; see `bench/src/scenarios/tenants.rs`). Per database: (value while \
         idle − value before the first open) ÷ N.\n",
        idle_ms(ctx) / 1000,
        if ctx.quick {
            SETTLE_MS_QUICK
        } else {
            SETTLE_MS_FULL
        } / 1000,
        fmt(f(&ours, "settle_secs")),
    ));
    rep.section("6. Tenants (many databases in one process)", table);
    rep.raw
        .insert("tenants".into(), json!({"native": native, "ours": ours}));
    for m in measures {
        rep.push(m);
    }
    Ok(())
}

fn idle_ms(ctx: &Ctx) -> u64 {
    if ctx.quick {
        IDLE_MS_QUICK
    } else {
        IDLE_MS_FULL
    }
}

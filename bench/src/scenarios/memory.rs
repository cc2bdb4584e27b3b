//! 5. Memory: peak RSS (`ru_maxrss` from `wait4`, so the whole process life including the
//!    extension's exit flush) of a writer process that commits one transaction, with and
//!    without the extension; and of the official sidecar replicating the same transaction.

use std::time::Duration;

use serde_json::json;

use super::{arg, create_db, list_level, start_sidecar, Ctx};
use crate::error::{failed, Result};
use crate::procs::{self, Replica};
use crate::report::{fmt, Measure, Report};

/// The sidecar is stopped once its replica got no new L0 file for this long after the writer
/// exited (it syncs every second, so 2.5 s without a file means it has caught up).
const SIDECAR_SETTLE: Duration = Duration::from_millis(2500);
/// Upper bound for the sidecar to ship a big transaction.
const SIDECAR_SHIP_TIMEOUT: Duration = Duration::from_secs(300);

const SMALL: u64 = 1 << 20;

fn big(quick: bool) -> u64 {
    if quick {
        64 << 20
    } else {
        1 << 30
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Peak RSS (KiB) of a writer committing `bytes` in one transaction.
fn writer(ctx: &Ctx, name: &str, ext: bool, bytes: u64) -> Result<u64> {
    let dir = ctx.fresh_dir(&format!("memory/{name}"))?;
    let db = dir.join("db.sqlite");
    create_db(&db)?;
    let config = dir.join("litestream.yml");
    procs::write_config(&config, &db, &Replica::File(dir.join("replica")), "1s", "")?;
    let (v, exit) = procs::run_worker(
        &ctx.tools,
        &[
            arg("rss"),
            arg("--db"),
            arg(db.display()),
            arg("--ext"),
            arg(u8::from(ext)),
            arg("--txn-bytes"),
            arg(bytes),
        ],
        ext.then_some(config.as_path()),
        &dir.join("result.json"),
        &dir.join("worker.log"),
    )?;
    if let Some(e) = super::worker_error(&v, &dir.join("worker.log")) {
        return Err(failed(format!("memory, {name}"), e));
    }
    if ext && list_level(&dir.join("replica"), 0).is_empty() {
        return Err(failed(
            format!("memory, {name}"),
            "the extension shipped nothing",
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(exit.maxrss_kib)
}

/// Peak RSS (KiB) of the sidecar while a plain writer commits `bytes` in one transaction.
fn sidecar(ctx: &Ctx, name: &str, bytes: u64) -> Result<u64> {
    let dir = ctx.fresh_dir(&format!("memory/{name}"))?;
    let db = dir.join("db.sqlite");
    let replica = dir.join("replica");
    create_db(&db)?;
    let sc = start_sidecar(ctx, &dir, &db, &Replica::File(replica.clone()), "")?;
    let (v, _) = procs::run_worker(
        &ctx.tools,
        &[
            arg("rss"),
            arg("--db"),
            arg(db.display()),
            arg("--ext"),
            arg(0),
            arg("--txn-bytes"),
            arg(bytes),
        ],
        None,
        &dir.join("result.json"),
        &dir.join("worker.log"),
    )?;
    if let Some(e) = super::worker_error(&v, &dir.join("worker.log")) {
        return Err(failed(format!("memory, {name}"), e));
    }
    let shipped = |r: &std::path::Path| {
        list_level(r, 0)
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    // Wait until the transaction is in the replica (at least half its bytes after LZ4), then
    // until no new file arrived for SIDECAR_SETTLE.
    procs::wait_for(SIDECAR_SHIP_TIMEOUT, || shipped(&replica) >= bytes / 2);
    let mut last = (list_level(&replica, 0).len(), crate::sys::mono_ns());
    procs::wait_for(SIDECAR_SHIP_TIMEOUT, || {
        let n = list_level(&replica, 0).len();
        if n != last.0 {
            last = (n, crate::sys::mono_ns());
        }
        crate::sys::mono_ns() - last.1 > SIDECAR_SETTLE.as_nanos() as u64
    });
    let exit = sc.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(exit.maxrss_kib)
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let big = big(ctx.quick);
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    for (label, bytes) in [("small", SMALL), ("big", big)] {
        // Alternate which contender goes first.
        let (native, ours) = if label == "small" {
            let n = writer(ctx, &format!("{label}-native"), false, bytes)?;
            (n, writer(ctx, &format!("{label}-ours"), true, bytes)?)
        } else {
            let o = writer(ctx, &format!("{label}-ours"), true, bytes)?;
            (writer(ctx, &format!("{label}-native"), false, bytes)?, o)
        };
        let side = sidecar(ctx, &format!("{label}-sidecar"), bytes)?;
        raw.insert(
            label.into(),
            json!({"bytes": bytes, "native_kib": native, "ours_kib": ours, "sidecar_kib": side}),
        );
        rows.push((bytes, native, ours, side));
    }
    let extra = |r: &(u64, u64, u64, u64)| mib(r.2) - mib(r.1);
    rep.push(Measure::new(
        "extra_rss_mib_1gib_txn",
        "MiB",
        Some(extra(&rows[1])),
        Some(mib(rows[1].3)),
    ));
    rep.push(Measure::new(
        "extra_rss_mib_small_txn",
        "MiB",
        Some(extra(&rows[0])),
        Some(mib(rows[0].3)),
    ));
    rep.push(Measure::new(
        "writer_rss_mib_1gib_txn",
        "MiB",
        Some(mib(rows[1].2)),
        Some(mib(rows[1].1)),
    ));
    let mut table = String::from(
        "| transaction | native writer MiB | writer with extension MiB | extra MiB | sidecar process MiB |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} MiB | {} | {} | {} | {} |\n",
            r.0 >> 20,
            fmt(Some(mib(r.1))),
            fmt(Some(mib(r.2))),
            fmt(Some(extra(r))),
            fmt(Some(mib(r.3)))
        ));
    }
    table.push_str(&format!(
        "\nPeak RSS (`ru_maxrss`) of a fresh writer process that commits one transaction of \
         {}-byte rows and closes (default page cache, `synchronous=NORMAL`); with the extension the \
         file replica syncs every 1 s and the exit flush ships the transaction before the \
         process ends. Extra = with − without. The sidecar column is the peak RSS of the \
         official `litestream replicate` process replicating the same transaction from a plain \
         writer: the memory the sidecar approach adds, used as the peer of \
         `extra_rss_mib_*`.{}\n",
        crate::worker::BIG_ROW_BYTES,
        if ctx.quick {
            " QUICK: the big transaction is 64 MiB instead of 1 GiB (the measure keeps its name)."
        } else {
            ""
        }
    ));
    rep.section("5. Memory", table);
    rep.raw
        .insert("memory".into(), serde_json::Value::Object(raw));
    Ok(())
}

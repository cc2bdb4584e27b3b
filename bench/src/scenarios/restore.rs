//! 3. Restore: one replica written by the official sidecar (a ~1 GiB database filled in many
//!    transactions, with compaction to L1 every few seconds, so the replica has a snapshot,
//!    L1 and L0 files), restored by our `litestream restore` and the official one, from the
//!    `file` replica and from the same files uploaded to the S3 emulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use super::{arg, create_db, list_level, short, start_sidecar, Ctx};
use crate::error::{failed, Context, Result};
use crate::procs::{self, Replica};
use crate::report::{fmt, median, Measure, Report};

/// Restore rounds per contender and replica (full, QUICK); a 1 GiB official restore takes
/// tens of seconds, so three rounds bound the scenario to a few minutes.
const FULL_ROUNDS: usize = 3;
const QUICK_ROUNDS: usize = 2;
/// The sidecar has caught up when no new L0 file appeared for this long (it syncs every 1 s).
const SETTLE: Duration = Duration::from_secs(3);
/// Upper bound for the sidecar to catch up with the fill.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

/// (database bytes, bytes per transaction, pause between transactions ms, L1 interval).
fn sizes(quick: bool) -> (u64, u64, u64, &'static str) {
    if quick {
        (32 << 20, 4 << 20, 150, "2s")
    } else {
        (1 << 30, 16 << 20, 150, "10s")
    }
}

/// Row count, total payload and the highest row id: two restores are equal when these are.
fn fingerprint(db: &Path) -> Result<(i64, i64, i64)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ctx(|| format!("open {}", db.display()))?;
    conn.query_row(
        "SELECT (SELECT count(*) FROM t), (SELECT sum(length(v)) FROM t), (SELECT max(id) FROM t)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ctx(|| format!("fingerprint {}", db.display()))
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let (bytes, txn, pause, l1) = sizes(ctx.quick);
    let rounds = if ctx.quick { QUICK_ROUNDS } else { FULL_ROUNDS };
    let dir = ctx.fresh_dir("restore")?;
    let db = dir.join("db.sqlite");
    let replica = dir.join("replica");
    create_db(&db)?;
    let top = format!("levels:\n  - interval: {l1}\n");
    let sidecar = start_sidecar(ctx, &dir, &db, &Replica::File(replica.clone()), &top)?;
    let args = vec![
        arg("fill"),
        arg("--db"),
        arg(db.display()),
        arg("--bytes"),
        arg(bytes),
        arg("--txn-bytes"),
        arg(txn),
        arg("--pause-ms"),
        arg(pause),
    ];
    let (v, _) = procs::run_worker(
        &ctx.tools,
        &args,
        None,
        &dir.join("fill.json"),
        &dir.join("fill.log"),
    )?;
    if let Some(e) = super::worker_error(&v, &dir.join("fill.log")) {
        return Err(failed("restore: fill", e));
    }
    // Let one more L1 compaction run, and the sidecar catch up: no new L0 file for
    // SETTLE (it syncs every second), so that its replica holds the whole source.
    let l1_secs: u64 = l1.trim_end_matches('s').parse().unwrap_or(10);
    std::thread::sleep(Duration::from_secs(l1_secs + 2));
    let mut last = (list_level(&replica, 0).len(), crate::sys::mono_ns());
    let settled = procs::wait_for(CATCH_UP_TIMEOUT, || {
        let n = list_level(&replica, 0).len();
        if n != last.0 {
            last = (n, crate::sys::mono_ns());
        }
        crate::sys::mono_ns() - last.1 > SETTLE.as_nanos() as u64
    });
    if !settled {
        return Err(failed(
            "restore: sidecar",
            "still shipping L0 files after the fill",
        ));
    }
    sidecar.stop()?;
    let source = fingerprint(&db)?;
    let mut files = BTreeMap::new();
    let mut replica_bytes = 0u64;
    for level in 0..=9u32 {
        let l = list_level(&replica, level);
        for f in &l {
            replica_bytes += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        }
        if !l.is_empty() {
            files.insert(level, l);
        }
    }
    let layout = files
        .iter()
        .map(|(l, v)| format!("L{l}: {}", v.len()))
        .collect::<Vec<_>>()
        .join(", ");
    let db_size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let log = dir.join("restore.log");
    let file_url = Replica::File(replica.clone()).url();
    let file = measure(ctx, rounds, &file_url, &dir, &log, source)?;

    // The same files in the emulator, in the S3 layout (`<prefix>/<level %04x>/<name>`).
    let s3 = ctx.s3()?;
    for (level, list) in &files {
        for f in list {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s3.moto
                .put_file(&format!("restore/{level:04x}/{name}"), f)?;
        }
    }
    let s3_url = Replica::S3 {
        port: s3.moto.port,
        prefix: "restore".into(),
    }
    .url();
    let s3r = measure(ctx, rounds, &s3_url, &dir, &log, source)?;

    let mb = db_size as f64 / 1e6;
    let mut table = format!(
        "Replica written by the official sidecar while a writer filled a {:.0} MiB database in \
         {} transactions of {} MiB (L1 compaction every {l1}): {layout} files, {:.0} MiB in all. \
         Median of {rounds} alternating rounds, wall-clock time of the whole command, page \
         cache warm (the machine is shared: caches are not dropped). Every restore was checked \
         against the source (row count, payload bytes, highest row id).\n\n\
         | from | ours s | official s | ratio | ours MB/s | official MB/s |\n| --- | --- | --- | --- | --- | --- |\n",
        db_size as f64 / (1 << 20) as f64,
        v["txns"].as_u64().unwrap_or(0),
        txn >> 20,
        replica_bytes as f64 / (1 << 20) as f64,
    );
    for (label, name, r) in [("file", "file", &file), ("S3 emulator", "s3", &s3r)] {
        let o = median(&r.ours);
        let p = median(&r.official);
        rep.push(Measure::new(&format!("restore_seconds_{name}"), "s", o, p));
        rep.push(Measure::new(
            &format!("restore_mb_per_s_{name}"),
            "MB/s",
            o.map(|s| mb / s),
            p.map(|s| mb / s),
        ));
        let ratio = o.zip(p).map(|(a, b)| a / b);
        let ours_cell = match &r.unsupported {
            Some(msg) => format!("n/a ({})", short(msg)),
            None => fmt(o),
        };
        table.push_str(&format!(
            "| {label} | {ours_cell} | {} | {} | {} | {} |\n",
            fmt(p),
            fmt(ratio),
            fmt(o.map(|s| mb / s)),
            fmt(p.map(|s| mb / s))
        ));
    }
    table.push_str(
        "\nMB/s = restored database bytes (10^6) per second. S3 restores read directly from the \
         emulator (not through the counting proxy); the emulator is a Python process, so these \
         numbers are bounded by its speed.\n",
    );
    rep.section("3. Restore", table);
    rep.raw.insert(
        "restore".into(),
        json!({"file": {"ours": file.ours, "official": file.official},
               "s3": {"ours": s3r.ours, "official": s3r.official, "ours_error": s3r.unsupported},
               "db_bytes": db_size, "replica_bytes": replica_bytes, "layout": layout}),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[derive(Default)]
struct Times {
    ours: Vec<f64>,
    official: Vec<f64>,
    unsupported: Option<String>,
}

fn measure(
    ctx: &Ctx,
    rounds: usize,
    url: &str,
    dir: &Path,
    log: &Path,
    source: (i64, i64, i64),
) -> Result<Times> {
    let mut t = Times::default();
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for ours in order {
            if ours && t.unsupported.is_some() {
                continue;
            }
            let (bin, out) = if ours {
                (&ctx.tools.ours, dir.join("out-ours.db"))
            } else {
                (&ctx.tools.official, dir.join("out-official.db"))
            };
            match procs::restore(bin, url, &out, log)? {
                Ok(secs) => {
                    let got = fingerprint(&out)?;
                    if got != source {
                        return Err(failed(
                            format!("restore {url} with {}", bin.display()),
                            format!("restored {got:?}, source has {source:?}"),
                        ));
                    }
                    if ours {
                        t.ours.push(secs);
                    } else {
                        t.official.push(secs);
                    }
                }
                Err(msg) if ours && url.starts_with("s3:") => t.unsupported = Some(msg),
                Err(msg) => {
                    return Err(failed(format!("restore {url} with {}", bin.display()), msg))
                }
            }
            let _ = std::fs::remove_file(&out);
        }
    }
    Ok(t)
}

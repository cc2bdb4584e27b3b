//! 4. Cost: object-store requests by kind per hour, idle and at 10 tx/s with sync 1 s,
//!    extrapolated from measured windows. Requests are counted by the proxy in front of the
//!    S3 emulator; for `file` replicas, files created and deleted are counted (inotify).
//!
//!    "Idle" is a database that is open and not written, with a replica that is up to date: a
//!    first process (with the contender replicating) commits once and exits; then a fresh
//!    contender process opens the database, finishes its start-up (warm-up), and the idle
//!    window follows without any write before it. The work a write leaves for the next hour
//!    (compaction at the level boundaries, L0 retention) is therefore not in the idle window;
//!    `bench/analysis.md` counts it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::{arg, create_db, short, start_sidecar, Ctx};
use crate::error::{failed, Result};
use crate::http::Kind;
use crate::procs::{self, Replica};
use crate::report::{fmt, Measure, Report};
use crate::watch::{Change, DirWatcher};

/// Commits per second of the "busy" window.
const RATE: u64 = 10;
/// Before the idle window: the contender finishes its start-up (ours: lease, reconcile, the
/// start-up compaction round, about 30 requests; the sidecar: its first look at the database
/// and the replica).
const WARMUP_MS: u64 = 5000;
/// The first process: its commit ships on the normal schedule before it exits.
const PREPARE_LINGER_MS: u64 = 2500;
/// After the busy window, so the last second's commits ship (not counted).
const LINGER_MS: u64 = 1200;

/// Length of each window (idle, busy). The full run's 60 s covers two of the sidecar's
/// 30-second L1 compactions.
fn window_secs(quick: bool) -> u64 {
    if quick {
        4
    } else {
        60
    }
}

#[derive(Clone, Copy)]
struct Contender {
    key: &'static str,
    ours: bool,
    s3: bool,
}

const CONTENDERS: [Contender; 4] = [
    Contender {
        key: "ours-s3",
        ours: true,
        s3: true,
    },
    Contender {
        key: "sidecar-s3",
        ours: false,
        s3: true,
    },
    Contender {
        key: "ours-file",
        ours: true,
        s3: false,
    },
    Contender {
        key: "sidecar-file",
        ours: false,
        s3: false,
    },
];

/// Counts per hour in the idle and the busy window, by kind ("PUT", …, "files created", …).
type Counts = [BTreeMap<String, f64>; 2];

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let w = window_secs(ctx.quick);
    let mut got: BTreeMap<&str, std::result::Result<Counts, String>> = BTreeMap::new();
    for c in CONTENDERS {
        got.insert(c.key, one(ctx, c, w)?);
    }
    let per_hour = |key: &str, win: usize, kind: &str| -> Option<f64> {
        match got.get(key) {
            Some(Ok(c)) => Some(c[win].get(kind).copied().unwrap_or(0.0)),
            _ => None,
        }
    };
    let s3_kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    for (win, wname) in [(0, "idle"), (1, "10tps_sync1s")] {
        rep.push(Measure::new(
            &format!("requests_per_hour_{wname}"),
            "requests/h",
            per_hour("ours-s3", win, "total"),
            per_hour("sidecar-s3", win, "total"),
        ));
        for (kind, m) in [
            ("PUT", "puts"),
            ("GET", "gets"),
            ("LIST", "lists"),
            ("DELETE", "deletes"),
        ] {
            rep.push(Measure::new(
                &format!("{m}_per_hour_{wname}"),
                "requests/h",
                per_hour("ours-s3", win, kind),
                per_hour("sidecar-s3", win, kind),
            ));
        }
        rep.push(Measure::new(
            &format!("files_written_per_hour_{wname}_file"),
            "files/h",
            per_hour("ours-file", win, "files created"),
            per_hour("sidecar-file", win, "files created"),
        ));
    }
    let mut table = String::from("| replica | window | contender |");
    for k in &s3_kinds {
        table.push_str(&format!(" {k} |"));
    }
    table.push_str(" total | files created | files deleted |\n|");
    for _ in 0..(s3_kinds.len() + 6) {
        table.push_str(" --- |");
    }
    table.push('\n');
    for c in CONTENDERS {
        for (win, wname) in [(0, "idle"), (1, "10 tx/s")] {
            let who = if c.ours { "ours" } else { "sidecar" };
            let dest = if c.s3 { "S3 emulator" } else { "file" };
            match &got[c.key] {
                Err(msg) => {
                    table.push_str(&format!(
                        "| {dest} | {wname} | {who} | not supported yet: {} |",
                        short(msg)
                    ));
                    for _ in 0..(s3_kinds.len() + 2) {
                        table.push_str(" |");
                    }
                    table.push('\n');
                }
                Ok(counts) => {
                    table.push_str(&format!("| {dest} | {wname} | {who} |"));
                    let cell = |k: &str| fmt(counts[win].get(k).copied());
                    for k in &s3_kinds {
                        table.push_str(&format!(" {} |", if c.s3 { cell(k) } else { "–".into() }));
                    }
                    let total = if c.s3 { cell("total") } else { "–".into() };
                    table.push_str(&format!(
                        " {total} | {} | {} |\n",
                        if c.s3 {
                            "–".into()
                        } else {
                            cell("files created")
                        },
                        if c.s3 {
                            "–".into()
                        } else {
                            cell("files deleted")
                        }
                    ));
                }
            }
        }
    }
    table.push_str(&format!(
        "\nPer hour, extrapolated from one {w}-second idle window and one {w}-second window at \
         {RATE} commits/s (both replicators with sync-interval 1 s and their default compaction \
         levels: L1 every 30 s, L2 every 5 min, L3 every hour, snapshot every 24 h). Idle: a \
         first process (with the contender replicating) commits once and exits; a fresh \
         contender process then opens the up-to-date database, warms up for {}s and the idle \
         window follows with no write before it (what a write leaves to do in the next hour is \
         counted in `analysis.md`, not here). The 10 tx/s window follows in the same process. \
         Activity rarer than the window (L2/L3 compactions, snapshots, retention) is not in \
         these numbers{}. S3: requests counted by the proxy between the replicator and the \
         emulator, by kind (PUT includes multipart and POST requests, DELETE includes batch \
         deletes). File: LTX files renamed into / deleted from the replica's level \
         directories.\n",
        WARMUP_MS / 1000,
        if ctx.quick {
            "; QUICK windows are too short to see even the sidecar's L1 compactions"
        } else {
            ""
        }
    ));
    rep.section("4. Cost (requests)", table);
    let raw: BTreeMap<&str, serde_json::Value> = got
        .iter()
        .map(|(k, v)| {
            (
                *k,
                match v {
                    Ok(c) => json!({"idle": c[0], "busy": c[1]}),
                    Err(e) => json!({"unsupported": e}),
                },
            )
        })
        .collect();
    rep.raw.insert("cost".into(), json!(raw));
    Ok(())
}

fn one(ctx: &Ctx, c: Contender, w: u64) -> Result<std::result::Result<Counts, String>> {
    let dir = ctx.fresh_dir(&format!("cost/{}", c.key))?;
    let db = dir.join("db.sqlite");
    create_db(&db)?;
    let replica = if c.s3 {
        Replica::S3 {
            port: ctx.s3()?.proxy.port,
            prefix: format!("cost-{}", c.key),
        }
    } else {
        Replica::File(dir.join("replica"))
    };
    let watcher = match &replica {
        Replica::File(p) => {
            let levels: Vec<_> = (0..=9).map(|l| p.join("ltx").join(l.to_string())).collect();
            Some(DirWatcher::start(&levels)?)
        }
        Replica::S3 { .. } => None,
    };
    let config = dir.join("litestream.yml");
    procs::write_config(&config, &db, &replica, "1s", "")?;
    // The first process: one commit, replicated by the contender.
    let prepare = [
        arg("--count"),
        arg(0),
        arg("--linger-ms"),
        arg(PREPARE_LINGER_MS),
    ];
    let (_, err) = run_paced(ctx, c, &dir, &db, &replica, &config, "prepare", &prepare)?;
    if let Some(e) = err {
        return Err(failed(format!("cost, {} (first process)", c.key), e));
    }
    // The measured process, with a fresh sidecar for the sidecar's turn.
    let measured = [
        arg("--first-commit"),
        arg(0),
        arg("--count"),
        arg(RATE * w),
        arg("--warmup-ms"),
        arg(WARMUP_MS),
        arg("--idle-ms"),
        arg(w * 1000),
        arg("--linger-ms"),
        arg(LINGER_MS),
    ];
    let (v, err) = run_paced(ctx, c, &dir, &db, &replica, &config, "worker", &measured)?;
    if let Some(e) = err {
        if c.ours && c.s3 {
            return Ok(Err(e));
        }
        return Err(failed(format!("cost, {}", c.key), e));
    }
    let idle = (
        v["idle"][0].as_u64().unwrap_or(0),
        v["idle"][1].as_u64().unwrap_or(0),
    );
    let a0 = v["active"][0].as_u64().unwrap_or(0);
    let busy = (a0, a0 + w * 1_000_000_000);
    let mut counts: Counts = Default::default();
    for (i, (t0, t1)) in [idle, busy].into_iter().enumerate() {
        let hours = (t1.saturating_sub(t0)) as f64 / 3.6e12;
        let m = &mut counts[i];
        match (&watcher, &replica) {
            (Some(wt), _) => {
                for e in wt.events().iter().filter(|e| e.t_ns >= t0 && e.t_ns < t1) {
                    let k = if e.change == Change::Created {
                        "files created"
                    } else {
                        "files deleted"
                    };
                    *m.entry(k.into()).or_default() += 1.0;
                }
                m.entry("files created".into()).or_default();
                m.entry("files deleted".into()).or_default();
            }
            (None, _) => {
                for k in Kind::ALL {
                    m.insert(k.name().into(), 0.0);
                }
                m.insert("total".into(), 0.0);
                for l in ctx
                    .s3()?
                    .proxy
                    .log()
                    .iter()
                    .filter(|l| l.t_start >= t0 && l.t_start < t1)
                {
                    *m.entry(l.kind().name().into()).or_default() += 1.0;
                    *m.entry("total".into()).or_default() += 1.0;
                }
            }
        }
        for v in m.values_mut() {
            *v /= hours;
        }
    }
    if let Some(w) = watcher {
        w.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Ok(counts))
}

/// Runs one `paced` worker (`extra`: its arguments beyond the database, contender and rate)
/// with contender `c` replicating: our extension with `config`, or a sidecar started for this
/// process alone. Its result and log are `<name>.json` and `<name>.log` in `dir`. Returns the
/// result and the worker's error, if it failed.
#[allow(clippy::too_many_arguments)]
fn run_paced(
    ctx: &Ctx,
    c: Contender,
    dir: &Path,
    db: &Path,
    replica: &Replica,
    config: &Path,
    name: &str,
    extra: &[String],
) -> Result<(serde_json::Value, Option<String>)> {
    let sidecar = if c.ours {
        None
    } else {
        Some(start_sidecar(ctx, dir, db, replica, "")?)
    };
    let mut args = vec![
        arg("paced"),
        arg("--db"),
        arg(db.display()),
        arg("--ext"),
        arg(u8::from(c.ours)),
        arg("--rate"),
        arg(RATE),
    ];
    args.extend_from_slice(extra);
    let log = dir.join(format!("{name}.log"));
    let (v, _) = procs::run_worker(
        &ctx.tools,
        &args,
        c.ours.then_some(config),
        &dir.join(format!("{name}.json")),
        &log,
    )?;
    if let Some(sc) = sidecar {
        sc.stop()?;
    }
    let err = super::worker_error(&v, &log);
    Ok((v, err))
}

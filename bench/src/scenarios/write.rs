//! 1. Write overhead: transactions per second of native SQLite (WAL), our VFS with a file
//!    replica at sync-interval 1s and 0, and native SQLite with a sidecar running: the official
//!    one, or ours (`litestream replicate` in sidecar mode).

use std::collections::BTreeMap;

use serde_json::json;

use super::{arg, create_db, rotated, start_our_sidecar, start_sidecar, Ctx};
use crate::error::{failed, Result};
use crate::procs::{self, Replica};
use crate::report::{fmt, median, Measure, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Native,
    Ours1s,
    Ours0,
    Sidecar,
    OurSidecar,
}

impl Contender {
    fn key(self) -> &'static str {
        match self {
            Contender::Native => "native",
            Contender::Ours1s => "ours-sync1s",
            Contender::Ours0 => "ours-sync0",
            Contender::Sidecar => "sidecar",
            Contender::OurSidecar => "our-sidecar",
        }
    }
}

/// (rounds, ms per workload) of a full run: five rounds so that the median shrugs off one
/// disturbed round; 2 s per workload spans several WAL checkpoints.
const FULL_ROUNDS: (usize, u64) = (5, 2000);
/// QUICK: just enough to exercise every contender twice.
const QUICK_ROUNDS: (usize, u64) = (2, 300);

/// (worker argument, measure name part, table label).
const WORKLOADS: [(&str, &str, &str); 4] = [
    (
        "autocommit:normal",
        "autocommit_normal",
        "1 row / txn, NORMAL",
    ),
    (
        "batch:normal",
        "batch1000_normal",
        "1000 rows / txn, NORMAL",
    ),
    ("autocommit:full", "autocommit_full", "1 row / txn, FULL"),
    ("batch:full", "batch1000_full", "1000 rows / txn, FULL"),
];

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let (rounds, ms) = if ctx.quick { QUICK_ROUNDS } else { FULL_ROUNDS };
    let all = [
        Contender::Native,
        Contender::Ours1s,
        Contender::Ours0,
        Contender::Sidecar,
        Contender::OurSidecar,
    ];
    let mut tps: BTreeMap<(Contender, usize), Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<(Contender, usize), Vec<f64>> = BTreeMap::new();
    // CPU of the writing thread alone (the application's thread).
    let mut thread_cpu: BTreeMap<(Contender, usize), Vec<f64>> = BTreeMap::new();
    let workloads: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
    for round in 0..rounds {
        for c in rotated(&all, round) {
            let dir = ctx.fresh_dir(&format!("write/r{round}-{}", c.key()))?;
            let db = dir.join("db.sqlite");
            let replica = dir.join("replica");
            create_db(&db)?;
            let ext = matches!(c, Contender::Ours1s | Contender::Ours0);
            let config = dir.join("litestream.yml");
            let sync = if c == Contender::Ours0 { "0s" } else { "1s" };
            procs::write_config(&config, &db, &Replica::File(replica.clone()), sync, "")?;
            let sidecar = if c == Contender::Sidecar {
                Some(start_sidecar(
                    ctx,
                    &dir,
                    &db,
                    &Replica::File(replica.clone()),
                    "",
                )?)
            } else if c == Contender::OurSidecar {
                Some(start_our_sidecar(
                    ctx,
                    &dir,
                    &db,
                    &Replica::File(replica.clone()),
                    "1s",
                )?)
            } else {
                None
            };
            let args = vec![
                arg("tps"),
                arg("--db"),
                arg(db.display()),
                arg("--ext"),
                arg(u8::from(ext)),
                arg("--secs-ms"),
                arg(ms),
                arg("--workloads"),
                workloads.join(","),
            ];
            let (v, _) = procs::run_worker(
                &ctx.tools,
                &args,
                ext.then_some(config.as_path()),
                &dir.join("result.json"),
                &dir.join("worker.log"),
            )?;
            if let Some(sc) = sidecar {
                sc.stop()?;
            }
            if let Some(e) = super::worker_error(&v, &dir.join("worker.log")) {
                return Err(failed(format!("write overhead, {}", c.key()), e));
            }
            let results = v["results"].as_array().cloned().unwrap_or_default();
            for (i, r) in results.iter().enumerate() {
                let txns = r["txns"].as_f64().unwrap_or(0.0);
                let secs = r["secs"].as_f64().unwrap_or(1.0);
                tps.entry((c, i)).or_default().push(txns / secs);
                let cpu_secs = r["cpu_secs"].as_f64().unwrap_or(0.0);
                cpu.entry((c, i))
                    .or_default()
                    .push(cpu_secs / txns.max(1.0) * 1e6);
                let thread_secs = r["thread_cpu_secs"].as_f64().unwrap_or(0.0);
                thread_cpu
                    .entry((c, i))
                    .or_default()
                    .push(thread_secs / txns.max(1.0) * 1e6);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let med = |c: Contender, i: usize| tps.get(&(c, i)).and_then(|v| median(v));
    let med_cpu = |c: Contender, i: usize| cpu.get(&(c, i)).and_then(|v| median(v));
    let mut table = String::from(
        "Median transactions per second over the rounds (ratio to native in parentheses).\n\n\
         | workload | native WAL | ours, sync 1s | ours, sync 0 | native + sidecar | native + our sidecar |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for (i, (_, name, label)) in WORKLOADS.iter().enumerate() {
        let n = med(Contender::Native, i);
        let cell = |c| {
            let v = med(c, i);
            let r = v.zip(n).map(|(a, b)| a / b);
            format!("{} ({})", fmt(v), fmt(r))
        };
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            fmt(n),
            cell(Contender::Ours1s),
            cell(Contender::Ours0),
            cell(Contender::Sidecar),
            cell(Contender::OurSidecar)
        ));
        rep.push(Measure::new(
            &format!("write_tps_{name}_our_sidecar"),
            "tx/s",
            med(Contender::OurSidecar, i),
            n,
        ));
        rep.push(Measure::new(
            &format!("write_tps_{name}"),
            "tx/s",
            med(Contender::Ours1s, i),
            n,
        ));
        rep.push(Measure::new(
            &format!("write_tps_{name}_sync0"),
            "tx/s",
            med(Contender::Ours0, i),
            n,
        ));
        rep.push(Measure::new(
            &format!("write_tps_{name}_vs_sidecar"),
            "tx/s",
            med(Contender::Ours1s, i),
            med(Contender::Sidecar, i),
        ));
    }
    table.push_str(
        "\nCPU time of the writer process per transaction (µs, user + system, all threads \
         including the extension's uploader; median). Unlike throughput this barely depends on \
         what else runs on the machine. The sidecar's own CPU is not included.\n\n\
         | workload | native WAL | ours, sync 1s | ours, sync 0 | native + sidecar |\n| --- | --- | --- | --- | --- |\n",
    );
    for (i, (_, name, label)) in WORKLOADS.iter().enumerate() {
        let n = med_cpu(Contender::Native, i);
        let cell = |c| {
            let v = med_cpu(c, i);
            let r = v.zip(n).map(|(a, b)| a / b);
            format!("{} (×{})", fmt(v), fmt(r))
        };
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} |\n",
            fmt(n),
            cell(Contender::Ours1s),
            cell(Contender::Ours0),
            cell(Contender::Sidecar)
        ));
        rep.push(Measure::new(
            &format!("write_cpu_us_per_txn_{name}"),
            "µs CPU/tx",
            med_cpu(Contender::Ours1s, i),
            n,
        ));
    }
    // Each round runs every contender once, so the n-th value of a contender is from round n.
    let round_ratios = |c: Contender, i: usize| -> Vec<f64> {
        let (Some(o), Some(n)) = (tps.get(&(c, i)), tps.get(&(Contender::Native, i))) else {
            return Vec::new();
        };
        o.iter().zip(n).map(|(a, b)| a / b).collect()
    };
    let min_of = |v: &[f64]| v.iter().copied().reduce(f64::min);
    table.push_str(
        "\nRatio to native within each round (ours ÷ native of the same round): the minimum over \
         the rounds, then every round in order.\n\n\
         | workload | ours, sync 1s: min | every round | ours, sync 0: min | every round |\n| --- | --- | --- | --- | --- |\n",
    );
    for (i, (_, name, label)) in WORKLOADS.iter().enumerate() {
        let (r1, r0) = (
            round_ratios(Contender::Ours1s, i),
            round_ratios(Contender::Ours0, i),
        );
        let all = |v: &[f64]| {
            v.iter()
                .map(|x| fmt(Some(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} |\n",
            fmt(min_of(&r1)),
            all(&r1),
            fmt(min_of(&r0)),
            all(&r0)
        ));
        rep.push(Measure::new(
            &format!("write_tps_min_round_ratio_{name}"),
            "ratio",
            min_of(&r1),
            None,
        ));
        rep.push(Measure::new(
            &format!("write_tps_min_round_ratio_{name}_sync0"),
            "ratio",
            min_of(&r0),
            None,
        ));
    }
    let med_thread = |c: Contender, i: usize| thread_cpu.get(&(c, i)).and_then(|v| median(v));
    table.push_str(
        "\nCPU time of the application's writing thread alone per transaction (µs, median): what \
         the commit path costs the application, without the extension's background threads.\n\n\
         | workload | native WAL | ours, sync 1s | ours, sync 0 |\n| --- | --- | --- | --- |\n",
    );
    for (i, (_, name, label)) in WORKLOADS.iter().enumerate() {
        let n = med_thread(Contender::Native, i);
        let cell = |c| {
            let v = med_thread(c, i);
            let r = v.zip(n).map(|(a, b)| a / b);
            format!("{} (×{})", fmt(v), fmt(r))
        };
        table.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            fmt(n),
            cell(Contender::Ours1s),
            cell(Contender::Ours0)
        ));
        rep.push(Measure::new(
            &format!("write_thread_cpu_us_per_txn_{name}"),
            "µs CPU/tx",
            med_thread(Contender::Ours1s, i),
            n,
        ));
    }
    table.push_str(&format!(
        "\n{rounds} rounds of {ms} ms per workload; in each round every contender runs the four \
         workloads in one fresh writer process on a fresh database, and the contender order \
         rotates from round to round. Rows are {} bytes. The sidecar (official `litestream \
         replicate`, default monitor/sync interval 1 s, file replica) is started before and \
         stopped after its contender's process; so is ours in sidecar mode (`litestream \
         replicate -config`, sync interval 1 s, file replica; the writer does not load the \
         extension). With a sidecar running, the writer's own automatic checkpoints cannot \
         complete (the sidecar holds a read transaction and checkpoints the database itself), \
         so part of native SQLite's work moves into the sidecar process, whose CPU is not in \
         these numbers.\n",
        crate::worker::TPS_ROW_BYTES
    ));
    rep.section("1. Write overhead", table);
    let raw: BTreeMap<String, Vec<f64>> = tps
        .iter()
        .map(|((c, i), v)| (format!("{}/{}", c.key(), WORKLOADS[*i].1), v.clone()))
        .collect();
    rep.raw.insert("write_tps".into(), json!(raw));
    let raw: BTreeMap<String, Vec<f64>> = cpu
        .iter()
        .map(|((c, i), v)| (format!("{}/{}", c.key(), WORKLOADS[*i].1), v.clone()))
        .collect();
    rep.raw.insert("write_cpu_us_per_txn".into(), json!(raw));
    Ok(())
}

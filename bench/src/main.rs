//! `litestream-bench`: liblitestream against native SQLite and the official Litestream
//! sidecar, on the same machine in the same run (issue 7). Driven by `make bench`.
//!
//! ```text
//! litestream-bench run [--quick] [--out DIR] [--work DIR] [--only write,lag,restore,memory,cost,tenants]
//! litestream-bench render [--out DIR] [--work DIR]   (rewrite the outputs from work/report.json)
//! litestream-bench worker <mode> …      (internal: one writer process)
//! ```
//! Writes `DIR/results.json`, `DIR/RESULTS.md` and `DIR/lag.svg` (DIR defaults to `bench/`).

mod env;
mod error;
mod http;
mod ltx;
mod procs;
mod report;
mod scenarios;
mod svg;
mod sys;
mod tenants_worker;
mod watch;
mod worker;

use std::path::PathBuf;

use error::{failed, Context, Result};
use report::Report;
use scenarios::{Ctx, S3};

const SCENARIOS: [&str; 6] = ["write", "lag", "restore", "memory", "cost", "tenants"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("worker") => worker::main(&args[1..]),
        Some("render") => match options(&args[1..]).and_then(|o| report::render(&o.out, &o.work)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("litestream-bench: {e}");
                1
            }
        },
        Some("run") => match run(&args[1..]) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("litestream-bench: {e}");
                1
            }
        },
        _ => {
            eprintln!(
                "usage: litestream-bench run [--quick] [--out DIR] [--work DIR] [--only LIST]"
            );
            2
        }
    };
    std::process::exit(code);
}

struct Options {
    quick: bool,
    out: PathBuf,
    work: PathBuf,
    only: Vec<String>,
}

fn options(args: &[String]) -> Result<Options> {
    let root = env::workspace_root();
    let mut o = Options {
        quick: false,
        out: root.join("bench"),
        work: root.join("bench/work"),
        only: SCENARIOS.iter().map(|s| s.to_string()).collect(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| failed("arguments", format!("{a} needs a value")))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--out" => o.out = PathBuf::from(value()?),
            "--work" => o.work = PathBuf::from(value()?),
            "--only" => {
                o.only = value()?.split(',').map(str::to_string).collect();
                if let Some(bad) = o.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(failed("--only", format!("unknown scenario {bad}")));
                }
            }
            other => return Err(failed("arguments", format!("unknown argument {other}"))),
        }
    }
    Ok(o)
}

/// Runs the selected scenarios; a failing scenario is reported and the others still run.
/// Returns false if any failed.
fn run(args: &[String]) -> Result<bool> {
    let o = options(args)?;
    let tools = env::Tools::locate()?;
    let _ = std::fs::remove_dir_all(&o.work);
    std::fs::create_dir_all(&o.work).ctx(|| format!("create {}", o.work.display()))?;
    let mut rep = Report {
        machine: env::machine_description(),
        quick: o.quick,
        ..Report::default()
    };
    rep.note(format!(
        "Load average when the run started: {} — the machine's 2 cores are shared with other \
         jobs, so absolute numbers move between runs; contenders alternate within each \
         measurement so that such noise hits all of them alike.",
        env::load_average()
    ));
    eprintln!(
        "litestream-bench: {}{}",
        rep.machine,
        if o.quick { " (QUICK)" } else { "" }
    );
    let moto = procs::Moto::start(&tools, &o.work.join("moto.log"))?;
    let proxy = http::Proxy::start(moto.port)?;
    let ctx = Ctx {
        tools,
        work: o.work.clone(),
        quick: o.quick,
        s3: Some(S3 { moto, proxy }),
    };
    let mut ok = true;
    for name in SCENARIOS.iter().filter(|s| o.only.iter().any(|x| x == *s)) {
        let t0 = sys::mono_ns();
        eprintln!("litestream-bench: {name} …");
        let r = match *name {
            "write" => scenarios::write::run(&ctx, &mut rep),
            "lag" => scenarios::lag::run(&ctx, &mut rep),
            "restore" => scenarios::restore::run(&ctx, &mut rep),
            "memory" => scenarios::memory::run(&ctx, &mut rep),
            "tenants" => scenarios::tenants::run(&ctx, &mut rep),
            _ => scenarios::cost::run(&ctx, &mut rep),
        };
        let secs = (sys::mono_ns() - t0) as f64 / 1e9;
        match r {
            Ok(()) => eprintln!("litestream-bench: {name} done in {secs:.1} s"),
            Err(e) => {
                ok = false;
                eprintln!("litestream-bench: {name} FAILED after {secs:.1} s: {e}");
                rep.note(format!("Scenario `{name}` failed: {e}"));
            }
        }
    }
    rep.note(format!(
        "Load average when the run ended: {}.",
        env::load_average()
    ));
    rep.sections.sort_by(|a, b| a.0.cmp(&b.0));
    report::write_all(&rep, &o.out, &o.work)?;
    eprintln!(
        "litestream-bench: wrote {}/results.json, RESULTS.md, lag.svg",
        o.out.display()
    );
    Ok(ok)
}

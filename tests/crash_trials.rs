//! Crash trials (see `litestream_tests::crash`): writers SIGKILLed at random moments during
//! commits, staging, uploads, compaction, snapshots and retention; every restore must pass
//! `integrity_check`, equal the local database and hold every acknowledged transaction.
//!
//! `LITESTREAM_CRASH_KILLS` sets the total number of kills (default 20, `make test`);
//! `make crash-trials N=200` runs the long version. The kills are spread over four trials that
//! run in parallel; the last one to finish prints the totals.
//!
//! Needs: the extension, our CLI, the official binary, `sqlite3`, `/usr/bin/python3`.

use std::sync::Mutex;

use litestream_tests::crash::{run_trial, TrialReport};
use litestream_tests::seed_from_env_or_random;

/// Kills in `make test`.
const DEFAULT_KILLS: usize = 20;
const TRIALS: usize = 4;

static TOTALS: Mutex<(usize, Option<TrialReport>)> = Mutex::new((0, None));

fn kills_for(trial: usize) -> usize {
    let total = std::env::var("LITESTREAM_CRASH_KILLS")
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("LITESTREAM_CRASH_KILLS={v:?} is not a number"))
        })
        .unwrap_or(DEFAULT_KILLS);
    total / TRIALS + usize::from(trial < total % TRIALS)
}

fn trial(n: usize) {
    let seed = seed_from_env_or_random().wrapping_add(n as u64);
    let report = run_trial(&format!("crash-trial-{n}"), seed, kills_for(n));
    eprintln!("crash trial {n}: {}", report.summary());
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    t.0 += 1;
    t.1.get_or_insert_with(TrialReport::default).add(&report);
    if t.0 == TRIALS {
        let all = t.1.as_ref().expect("reports");
        eprintln!("crash trials, all {TRIALS}: {}", all.summary());
        println!("crash trials: {}", all.summary());
    }
}

#[test]
fn crash_trial_0() {
    trial(0);
}

#[test]
fn crash_trial_1() {
    trial(1);
}

#[test]
fn crash_trial_2() {
    trial(2);
}

#[test]
fn crash_trial_3() {
    trial(3);
}

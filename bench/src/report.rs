//! What a run produces: `results.json` (the schema of issue 7), `RESULTS.md` (tables, the
//! targets, the method) and `lag.svg` (lag distributions).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// One row of `results.json`. `ratio` = ours / peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    pub unit: String,
    pub ours: Option<f64>,
    pub peer: Option<f64>,
    pub ratio: Option<f64>,
}

impl Measure {
    pub fn new(name: &str, unit: &str, ours: Option<f64>, peer: Option<f64>) -> Measure {
        let ratio = match (ours, peer) {
            (Some(o), Some(p)) if p != 0.0 => Some(o / p),
            (Some(o), Some(p)) if p == 0.0 && o == 0.0 => Some(1.0),
            _ => None,
        };
        Measure {
            name: name.to_string(),
            unit: unit.to_string(),
            ours,
            peer,
            ratio,
        }
    }
}

/// A lag distribution for the plot.
#[derive(Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    /// Lags in ms, sorted ascending.
    pub lags_ms: Vec<f64>,
}

/// Everything a run measured; saved as `work/report.json` so that `render` can rewrite the
/// outputs (e.g. after editing `bench/analysis.md`) without measuring again.
#[derive(Default, Serialize, Deserialize)]
pub struct Report {
    pub machine: String,
    pub quick: bool,
    pub measures: Vec<Measure>,
    /// Markdown sections in order: (title, body).
    pub sections: Vec<(String, String)>,
    /// Method and caveat lines, shown under "Notes".
    pub notes: Vec<String>,
    pub series: Vec<Series>,
    /// Per-round numbers, for bench/work/raw.json.
    #[serde(skip)]
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub fn push(&mut self, m: Measure) {
        self.measures.push(m);
    }

    pub fn get(&self, name: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.name == name)
    }

    pub fn section(&mut self, title: &str, body: String) {
        self.sections.push((title.to_string(), body));
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A number for a table: 3 significant digits, or "n/a".
pub fn fmt(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_string(),
        Some(0.0) => "0".to_string(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// A target of the benchmark issues (commit path, request cost, restore), judged on the measures.
struct Target {
    text: &'static str,
    verdict: Option<bool>,
    detail: String,
}

fn targets(r: &Report) -> Vec<Target> {
    let ratio = |n: &str| r.get(n).and_then(|m| m.ratio);
    let ours = |n: &str| r.get(n).and_then(|m| m.ours);
    let peer = |n: &str| r.get(n).and_then(|m| m.peer);
    let mut t = Vec::new();
    // Issue 13: the commit path at native speed.
    let w = ratio("write_tps_autocommit_normal");
    let w_min = ours("write_tps_min_round_ratio_autocommit_normal");
    t.push(Target {
        text:
            "1-row autocommit NORMAL, sync 1 s: tx/s ÷ native ≥ 0.95 (median), every round ≥ 0.90",
        verdict: w.zip(w_min).map(|(m, lo)| m >= 0.95 && lo >= 0.90),
        detail: format!("median {}, lowest round {}", fmt(w), fmt(w_min)),
    });
    for (name, text, goal) in [
        (
            "write_tps_autocommit_normal_sync0",
            "same at sync-interval 0: ≥ 0.90",
            0.90,
        ),
        (
            "write_tps_autocommit_full",
            "1-row autocommit FULL, sync 1 s: ≥ 0.95",
            0.95,
        ),
        (
            "write_tps_batch1000_normal",
            "1000-row transactions NORMAL: ≥ 0.95",
            0.95,
        ),
        (
            "write_tps_batch1000_full",
            "1000-row transactions FULL: ≥ 0.95",
            0.95,
        ),
    ] {
        let x = ratio(name);
        t.push(Target {
            text,
            verdict: x.map(|x| x >= goal),
            detail: fmt(x),
        });
    }
    let cpu = ratio("write_cpu_us_per_txn_autocommit_normal");
    let app = ratio("write_thread_cpu_us_per_txn_autocommit_normal");
    t.push(Target {
        text: "CPU µs per 1-row commit ÷ native ≤ 1.25 (all threads), ≤ 1.10 (application thread)",
        verdict: cpu.zip(app).map(|(c, a)| c <= 1.25 && a <= 1.10),
        detail: format!(
            "all threads ×{}, application thread ×{}",
            fmt(cpu),
            fmt(app)
        ),
    });
    let l = ours("lag_p99_ms_file_sync0");
    let fsync = ours("disk_fsync_p99_ms");
    let allowed = fsync.map_or(LAG_P99_FILE_MS, |f| LAG_P99_FILE_MS.max(f + 2.0));
    t.push(Target {
        text: "lag p99, file replica, sync 0: ≤ 5 ms, or ≤ the disk's fsync p99 + 2 ms",
        verdict: l.map(|x| x <= allowed),
        detail: format!("{} ms (disk fsync p99 {} ms)", fmt(l), fmt(fsync)),
    });
    let l = ours("lag_p99_ms_s3_sync0");
    t.push(Target {
        text: "lag p99, S3 (moto), sync 0: ≤ 15 ms",
        verdict: l.map(|x| x <= 15.0),
        detail: format!("{} ms", fmt(l)),
    });
    for (name, label) in [
        ("restore_seconds_file", "file"),
        ("restore_seconds_s3", "S3"),
    ] {
        let x = ratio(name);
        t.push(Target {
            text: if label == "file" {
                "restore time ÷ official ≤ 0.5 (file)"
            } else {
                "restore time ÷ official ≤ 0.5 (S3)"
            },
            verdict: x.map(|x| x <= 0.5),
            detail: format!(
                "{} ({} s vs {} s)",
                fmt(x),
                fmt(ours(name)),
                fmt(peer(name))
            ),
        });
    }
    let idle = ours("requests_per_hour_idle");
    let files = |n: &str| {
        format!(
            "; file replica: ours {} / sidecar {} files written per hour",
            fmt(ours(n)),
            fmt(peer(n))
        )
    };
    t.push(Target {
        text: "zero requests per hour idle",
        verdict: idle.map(|x| x == 0.0),
        detail: format!(
            "S3: ours {} / sidecar {} requests per hour{}",
            fmt(idle),
            fmt(peer("requests_per_hour_idle")),
            files("files_written_per_hour_idle_file")
        ),
    });
    let puts = ours("puts_per_hour_10tps_sync1s");
    let ppeer = peer("puts_per_hour_10tps_sync1s");
    t.push(Target {
        text: "no more PUTs than the sidecar at 10 tx/s, sync 1s",
        verdict: puts.zip(ppeer).map(|(o, p)| o <= p),
        detail: format!(
            "S3: ours {} / sidecar {} PUTs per hour{}",
            fmt(puts),
            fmt(ppeer),
            files("files_written_per_hour_10tps_sync1s_file")
        ),
    });
    let big = ours("extra_rss_mib_1gib_txn");
    let small = ours("extra_rss_mib_small_txn");
    t.push(Target {
        text: "extra RSS of a 1 GiB transaction − a 1 MiB one ≤ 4 MiB",
        verdict: big.zip(small).map(|(b, s)| (b - s) <= RSS_INDEPENDENCE_MIB),
        detail: format!(
            "{} MiB for the big transaction, {} MiB for a 1 MiB one",
            fmt(big),
            fmt(small)
        ),
    });
    tenant_targets(r, &mut t);
    our_sidecar_targets(r, &mut t);
    t
}

/// Issue 15's targets for our `litestream replicate` in sidecar mode.
fn our_sidecar_targets(r: &Report, t: &mut Vec<Target>) {
    let ours = |n: &str| r.get(n).and_then(|m| m.ours);
    for (name, text, bound) in [
        (
            "lag_p99_ms_file_our_sidecar_sync0",
            "ours as a sidecar: lag p99, file replica, sync 0 ≤ 20 ms",
            20.0,
        ),
        (
            "lag_p99_ms_file_our_sidecar_sync1s",
            "ours as a sidecar: lag p99, file replica, sync 1s ≤ 1 s",
            1000.0,
        ),
    ] {
        let l = ours(name);
        t.push(Target {
            text,
            verdict: l.map(|x| x <= bound),
            detail: format!("{} ms", fmt(l)),
        });
    }
    let m = r.get("write_tps_autocommit_normal_our_sidecar");
    let x = m.and_then(|m| m.ours.zip(m.peer)).map(|(o, p)| o / p);
    t.push(Target {
        text: "ours as a sidecar: 1-row autocommit tx/s ÷ native ≥ 0.95",
        verdict: x.map(|x| x >= 0.95),
        detail: format!("{} (official sidecar: see section 1)", fmt(x)),
    });
}

/// A target of issue 14: text, measured value, the check, unit.
type TenantRow = (&'static str, Option<f64>, fn(f64) -> bool, &'static str);

/// Issue 14's targets (tenants benchmark, N databases in one process).
fn tenant_targets(r: &Report, t: &mut Vec<Target>) {
    let ours = |n: &str| r.get(n).and_then(|m| m.ours);
    let ratio = |n: &str| r.get(n).and_then(|m| m.ratio);
    let rows: [TenantRow; 6] = [
        (
            "tenants: CPU while idle, whole process ≤ 0.5 % of a core",
            ours("tenants_idle_cpu_pct"),
            |x| x <= 0.5,
            "%",
        ),
        (
            "tenants: extra file descriptors per open database ≤ +1",
            ours("tenants_extra_fds_per_db"),
            |x| x <= 1.0,
            "fds",
        ),
        (
            "tenants: extra RSS per open database ≤ 32 KiB",
            ours("tenants_extra_rss_kib_per_db"),
            |x| x <= 32.0,
            "KiB",
        ),
        (
            "tenants: S3 requests while idle, per hour = 0",
            ours("tenants_idle_requests_per_hour"),
            |x| x == 0.0,
            "requests/h",
        ),
        (
            "tenants: open N databases ÷ native ≤ 1.5",
            ratio("tenants_open_secs"),
            |x| x <= 1.5,
            "×",
        ),
        (
            "tenants: threads ≤ 8, independent of N",
            ours("tenants_threads"),
            |x| x <= 8.0,
            "threads",
        ),
    ];
    for (text, x, ok, unit) in rows {
        t.push(Target {
            text,
            verdict: x.map(ok),
            detail: format!("{} {unit}", fmt(x)),
        });
    }
}

/// Lag p99 target to a file replica at sync-interval 0 (ms), unless the disk's own fsync p99
/// is slower: then that plus 2 ms.
const LAG_P99_FILE_MS: f64 = 5.0;

/// "Independent of transaction size": the big transaction may cost at most this much more
/// extra RSS than a 1 MiB one (allocator noise between runs is a few MiB).
pub const RSS_INDEPENDENCE_MIB: f64 = 4.0;

/// Committed files name no path of this machine: the workspace root becomes `.`.
fn scrub(text: &str) -> String {
    let root = crate::env::workspace_root();
    let root = root.to_string_lossy();
    if root.len() > 1 {
        text.replace(root.as_ref(), ".")
    } else {
        text.to_string()
    }
}

pub fn write_all(r: &Report, out_dir: &Path, work: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).ctx(|| format!("create {}", out_dir.display()))?;
    #[derive(Serialize)]
    struct Doc<'a> {
        machine: &'a str,
        quick: bool,
        measures: &'a [Measure],
    }
    let doc = Doc {
        machine: &r.machine,
        quick: r.quick,
        measures: &r.measures,
    };
    let p = out_dir.join("results.json");
    let text = scrub(&serde_json::to_string_pretty(&doc).ctx(|| "results.json".to_string())?);
    std::fs::write(&p, text + "\n").ctx(|| format!("write {}", p.display()))?;
    if !r.raw.is_empty() {
        let raw = work.join("raw.json");
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(r.raw.clone()))
            .ctx(|| "raw.json".to_string())?;
        std::fs::write(&raw, text).ctx(|| format!("write {}", raw.display()))?;
    }
    let svg = crate::svg::lag_cdf(&r.series);
    let p = out_dir.join("lag.svg");
    std::fs::write(&p, svg).ctx(|| format!("write {}", p.display()))?;
    let saved = work.join("report.json");
    let text = serde_json::to_string(r).ctx(|| "report.json".to_string())?;
    std::fs::write(&saved, text).ctx(|| format!("write {}", saved.display()))?;
    let md = scrub(&markdown(r, out_dir));
    let p = out_dir.join("RESULTS.md");
    std::fs::write(&p, md).ctx(|| format!("write {}", p.display()))
}

/// Rewrites the outputs from a saved `work/report.json`.
pub fn render(out_dir: &Path, work: &Path) -> Result<()> {
    let saved = work.join("report.json");
    let text = std::fs::read_to_string(&saved).ctx(|| format!("read {}", saved.display()))?;
    let r: Report = serde_json::from_str(&text).ctx(|| format!("parse {}", saved.display()))?;
    write_all(&r, out_dir, work)
}

fn markdown(r: &Report, out_dir: &Path) -> String {
    let mut s = String::new();
    s.push_str("# Benchmark results\n\n");
    s.push_str("Generated by `make bench");
    if r.quick {
        s.push_str(" QUICK=1");
    }
    s.push_str("` (`bench/`, see `docs/benchmarks.md` for the method). ");
    if r.quick {
        s.push_str("**QUICK run: short windows and small sizes; numbers are indicative only.** ");
    }
    s.push_str(&format!("\n\nMachine: {}.\n\n", r.machine));
    s.push_str("## Targets\n\n| target | met | measured |\n| --- | --- | --- |\n");
    for t in targets(r) {
        let v = match t.verdict {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measurable yet",
        };
        s.push_str(&format!("| {} | {v} | {} |\n", t.text, t.detail));
    }
    s.push('\n');
    for (title, body) in &r.sections {
        s.push_str(&format!("## {title}\n\n{body}\n"));
    }
    s.push_str("## All measures (`results.json`)\n\n| name | unit | ours | peer | ratio |\n| --- | --- | --- | --- | --- |\n");
    for m in &r.measures {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            m.name,
            m.unit,
            fmt(m.ours),
            fmt(m.peer),
            fmt(m.ratio)
        ));
    }
    s.push_str("\nPeer = native SQLite for `write_tps_*` (except `*_vs_sidecar`: native SQLite with the sidecar running), the official Litestream 0.5.17 otherwise; ratio = ours / peer.\n\n");
    if !r.notes.is_empty() {
        s.push_str("## Notes\n\n");
        for n in &r.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s.push('\n');
    }
    let analysis = out_dir.join("analysis.md");
    if let Ok(text) = std::fs::read_to_string(&analysis) {
        s.push_str(&text);
        if !text.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_ours_over_peer() {
        let m = Measure::new("x", "s", Some(2.0), Some(4.0));
        assert_eq!(m.ratio, Some(0.5));
        assert_eq!(Measure::new("x", "s", None, Some(4.0)).ratio, None);
        assert_eq!(
            Measure::new("x", "n", Some(0.0), Some(0.0)).ratio,
            Some(1.0)
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}

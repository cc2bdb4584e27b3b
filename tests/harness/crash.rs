//! Crash trials: a writer process runs a randomized workload through the extension with short
//! compaction, snapshot and retention intervals; it is SIGKILLed at random moments (right after
//! a commit, after staging sealed an L0 file, after an upload, after a compaction, a snapshot
//! or a retention pass, or after a random delay), restarted, and finally the replica must
//! restore (ours and the official binary) to a database that passes `integrity_check`, equals
//! the local database, and holds every transaction acknowledged before a kill.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::checks::{assert_integrity, assert_restores_to, query_ids};
use crate::db::vfs_uri;
use crate::procs::{ext_prefix, python_command, run_ours, sqlite3};
use crate::replica::{file_url, Config};
use crate::scratch::Scratch;
use crate::session::json_str;
use crate::wait::wait_until;
use crate::workload::{Workload, WorkloadOptions};

/// How long an acknowledgement may take (sync interval + upload + a restore), generously.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a kill waits for its log marker before killing anyway.
const MARKER_TIMEOUT: Duration = Duration::from_secs(6);
/// Steps generated per trial: more than the rounds of one trial execute.
const STEPS: usize = 4000;

/// Accelerated schedule: compaction, snapshots and retention run many times per trial.
const SCHEDULE: [&str; 4] = [
    "levels: [{interval: 1s}, {interval: 2s}]",
    "snapshot: {interval: 2s, retention: 3s}",
    "l0-retention: 1s",
    "l0-retention-check-interval: 500ms",
];

/// Runs workload steps from a JSON file, resuming after the last step its ledger recorded.
/// Prints each step number after its ledger row committed.
const WRITER: &str = r#"
import json, random, time
uri, steps_path, seed = ARGS[0], ARGS[1], int(ARGS[2])
steps = json.load(open(steps_path))
rnd = random.Random(seed)
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
conn.execute("CREATE TABLE IF NOT EXISTS ledger(step INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
start = conn.execute("SELECT coalesce(max(step), -1) FROM ledger").fetchone()[0] + 1
first = True
for i in range(start, len(steps)):
    try:
        conn.executescript(steps[i])
    except sqlite3.Error:
        # Only the first step after a restart may fail: it committed before the kill, its
        # ledger row did not (re-running it hits "already exists" / "no such").
        if not first:
            raise
    first = False
    conn.execute("INSERT INTO ledger VALUES (?, ?)", (i, int(time.time() * 1000)))
    print(i, flush=True)
    time.sleep(rnd.random() * 0.03)
print("done", flush=True)
"#;

/// When a round's kill happens: right after one of these log lines (or a committed step).
const MOMENTS: [(&str, Option<&str>); 7] = [
    ("after a commit", None),
    ("after sealing an L0 file", Some("sealed L0 file")),
    ("after an upload", Some("/ltx/0/")),
    ("after a compaction", Some("compaction complete")),
    ("after a snapshot", Some("snapshot complete")),
    ("after retention", Some("retention enforced")),
    ("after a random delay", Some("")),
];

/// What a trial did, for the printed summary.
#[derive(Debug, Default, Clone)]
pub struct TrialReport {
    pub kills: BTreeMap<&'static str, usize>,
    /// Kills whose log marker did not show up in time (killed anyway).
    pub marker_timeouts: usize,
    pub acknowledged: usize,
    pub restores_checked: usize,
    pub steps: i64,
}

impl TrialReport {
    pub fn add(&mut self, other: &TrialReport) {
        for (k, v) in &other.kills {
            *self.kills.entry(k).or_default() += v;
        }
        self.marker_timeouts += other.marker_timeouts;
        self.acknowledged += other.acknowledged;
        self.restores_checked += other.restores_checked;
        self.steps += other.steps;
    }

    pub fn total_kills(&self) -> usize {
        self.kills.values().sum()
    }

    pub fn summary(&self) -> String {
        let moments: Vec<String> = self
            .kills
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{} kills ({}; {} killed without their log marker), {} acknowledged transactions \
             checked, {} restores verified, {} workload steps",
            self.total_kills(),
            moments.join(", "),
            self.marker_timeouts,
            self.acknowledged,
            self.restores_checked,
            self.steps
        )
    }
}

/// Restores `replica` with our CLI into `out` and returns its ledger steps (empty when the
/// replica cannot be restored yet).
fn restored_ledger(replica: &Path, out: &Path) -> Option<BTreeSet<i64>> {
    let _ = std::fs::remove_file(out);
    let o = run_ours(&["restore", "-o", &out.to_string_lossy(), &file_url(replica)]);
    if !o.success() {
        return None;
    }
    let ids = crate::db::query(out, "SELECT step FROM ledger;");
    Some(ids.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The one definition of "acknowledged" the trials use: waits until a restore of the replica
/// holds ledger step `step`. (When `PRAGMA litestream.checkpoint` exists, this is the place to
/// ask the writer for it instead.)
pub fn wait_acknowledged(replica: &Path, scratch: &Path, step: i64) -> bool {
    let out = scratch.join("ack-probe.db");
    wait_until(ACK_TIMEOUT, || {
        restored_ledger(replica, &out).is_some_and(|l| l.contains(&step))
    })
}

/// Reads what was appended to a log file since the last call.
struct LogTail {
    path: PathBuf,
    offset: u64,
    carry: String,
}

impl LogTail {
    fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            carry: String::new(),
        }
    }

    /// True when a complete new line contains `marker`.
    fn saw(&mut self, marker: &str) -> bool {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return false;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        let mut buf = String::new();
        let n = f.read_to_string(&mut buf).unwrap_or(0);
        self.offset += n as u64;
        self.carry.push_str(&buf);
        let mut found = false;
        while let Some(i) = self.carry.find('\n') {
            if self.carry[..i].contains(marker) {
                found = true;
            }
            self.carry.drain(..=i);
        }
        found
    }
}

struct Writer {
    child: Child,
    steps: mpsc::Receiver<Option<i64>>,
    log: PathBuf,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// The highest step the writer reported committed (after it died: every line is read).
    fn max_reported(&mut self) -> Option<i64> {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let text = std::fs::read_to_string(self.log.with_extension("steps")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).max()
    }
}

fn start_writer(uri: &str, steps: &Path, cfg: &Path, log: &Path, seed: u64) -> Writer {
    let mut child = python_command(
        WRITER,
        &[uri, &steps.to_string_lossy(), &seed.to_string()],
        &[("LITESTREAM_CONFIG", cfg)],
    )
    .env("LOG_LEVEL", "debug")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(log).expect("create writer log"))
    .spawn()
    .expect("start the python writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let mut printed =
        std::fs::File::create(log.with_extension("steps")).expect("create steps file");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(printed, "{line}");
            let msg = line.trim().parse::<i64>().ok();
            if tx.send(msg).is_err() || msg.is_none() {
                break;
            }
        }
    });
    Writer {
        child,
        steps: rx,
        log: log.to_path_buf(),
        reader: Some(reader),
    }
}

fn write_steps(w: &Workload, path: &Path) {
    let mut s = String::from("[\n");
    for (i, step) in w.steps.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&json_str(step));
    }
    s.push_str("\n]\n");
    std::fs::write(path, s).expect("write the steps file");
}

/// One trial: a database, a replica, `kills` SIGKILLs of its writer, then the final checks.
pub fn run_trial(name: &str, seed: u64, kills: usize) -> TrialReport {
    let mut rng = fastrand::Rng::with_seed(seed);
    let s = Scratch::new(name);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let sync = ["0", "100ms", "1s"][rng.usize(..3)];
    let mut c = Config::new().db(&db, &replica).sync_interval(sync);
    for line in SCHEDULE {
        c = c.extra(line);
    }
    let cfg = c.write(&s.join("litestream.yml"));
    let workload = Workload::generate(
        rng.u64(..),
        WorkloadOptions {
            steps: STEPS,
            big_blobs: false,
            byte_budget: 6 << 20,
            // SQLite 3.40.1 itself loses transactions after `ROLLBACK TO` a spilled savepoint
            // when it recovers from a crash (reproduced without the extension); see
            // `WorkloadOptions::savepoint_rollbacks`.
            savepoint_rollbacks: false,
            ..WorkloadOptions::default()
        },
    );
    eprintln!(
        "{name}: seed {seed} (replay with LITESTREAM_TEST_SEED={seed}), sync-interval {sync}, {}",
        workload.describe()
    );
    workload.prepare_db(&db);
    let steps_path = s.join("steps.json");
    write_steps(&workload, &steps_path);
    let uri = vfs_uri(&db, None);
    let mut report = TrialReport::default();
    let mut acked: BTreeSet<i64> = BTreeSet::new();

    for round in 0..kills {
        let log = s.join(format!("writer-{round}.log"));
        let mut w = start_writer(&uri, &steps_path, &cfg, &log, rng.u64(..));
        let fail = |w: &mut Writer, what: String| -> ! {
            let _ = w.child.kill();
            let _ = w.child.wait();
            panic!(
                "{name} round {round}: {what}; writer log {}",
                w.log.display()
            );
        };
        // Acknowledge the latest step committed so far in this round.
        let first = match w.steps.recv_timeout(ACK_TIMEOUT) {
            Ok(Some(step)) => step,
            Ok(None) | Err(_) => fail(&mut w, "the writer committed nothing".into()),
        };
        let mut latest = first;
        while let Ok(Some(step)) = w.steps.try_recv() {
            latest = step;
        }
        if !wait_acknowledged(&replica, s.path(), latest) {
            fail(&mut w, format!("step {latest} never reached the replica"));
        }
        acked.insert(latest);
        report.acknowledged += 1;

        // Kill at the chosen moment.
        let (moment, marker) = MOMENTS[rng.usize(..MOMENTS.len())];
        let mut tail = LogTail::new(&log);
        tail.saw("\u{0}"); // skip what is already logged
        let started = Instant::now();
        let delay = Duration::from_millis(rng.u64(0..1500));
        loop {
            let hit = match marker {
                None => matches!(w.steps.recv_timeout(Duration::from_millis(5)), Ok(Some(_))),
                Some("") => started.elapsed() >= delay,
                Some(m) => {
                    std::thread::sleep(Duration::from_millis(2));
                    tail.saw(m)
                }
            };
            if hit {
                break;
            }
            if started.elapsed() >= MARKER_TIMEOUT {
                report.marker_timeouts += 1;
                break;
            }
            if let Ok(Some(_)) = w.child.try_wait() {
                break; // the workload ran out: the round ends without a kill
            }
        }
        let _ = w.child.kill();
        let status = w.child.wait().expect("wait for the writer");
        if status.success() {
            eprintln!("{name} round {round}: the workload finished before the kill");
        } else {
            *report.kills.entry(moment).or_default() += 1;
        }

        // Every step the writer reported is committed: SQLite recovers it from the local files
        // (read on a copy, so nothing is checkpointed here).
        let local = query_ids(&db, "SELECT coalesce(max(step), -1) FROM ledger;")[0];
        if let Some(reported) = w.max_reported() {
            assert!(
                local >= reported,
                "{name} round {round} (seed {seed}): the writer reported step {reported} committed \
                 but the local database recovers only up to {local} after a kill {moment}; log {}",
                log.display()
            );
        }
        // Nothing acknowledged may be missing from the replica after a crash.
        let probe = s.join(format!("round-{round}.db"));
        let Some(have) = restored_ledger(&replica, &probe) else {
            panic!("{name} round {round}: the replica does not restore after the kill ({moment}); log {}", log.display());
        };
        assert_integrity(&probe, &format!("{name} round {round}: our restore"));
        let missing: Vec<&i64> = acked.difference(&have).collect();
        assert!(missing.is_empty(), "{name} round {round} (seed {seed}): acknowledged steps {missing:?} missing after a kill {moment}; log {}", log.display());
        // The replica never holds what the database does not.
        let ahead = have.iter().max().copied().unwrap_or(-1);
        assert!(
            ahead <= local,
            "{name} round {round} (seed {seed}): the replica holds step {ahead}, the local \
             database only {local}, after a kill {moment}; log {}",
            log.display()
        );
        report.restores_checked += 1;
        let _ = std::fs::remove_file(&probe);
    }

    // Keep the files as the last kill left them (for a post-mortem when a check fails).
    let keep = s.join("before-final");
    std::fs::create_dir_all(&keep).expect("create before-final");
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::copy(&from, keep.join(format!("app.db{suffix}"))).expect("copy db files");
        }
    }
    // Reopen in a process that exits normally: it resumes and flushes what was staged.
    let script = format!("{}SELECT count(*) FROM ledger;\n", ext_prefix(&uri));
    let out = sqlite3(
        &script,
        &[
            ("LITESTREAM_CONFIG", &cfg),
            ("LOG_LEVEL", Path::new("debug")),
        ],
    );
    let _ = std::fs::write(s.join("final-reopen.log"), format!("{out}"));
    assert!(
        out.success(),
        "{name}: reopening after the last kill failed: {out}"
    );
    let (ours, _official) = assert_restores_to(&s, &replica, &db, &format!("{name}-final"));
    report.restores_checked += 2;
    let have: BTreeSet<i64> = query_ids(&ours, "SELECT step FROM ledger;")
        .into_iter()
        .collect();
    let missing: Vec<&i64> = acked.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "{name} (seed {seed}): acknowledged steps {missing:?} missing from the final restore"
    );
    report.steps = query_ids(&db, "SELECT count(*) FROM ledger;")[0];
    report
}

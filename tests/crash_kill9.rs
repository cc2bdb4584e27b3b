//! Crash safety: a writer process (Debian's python3 loading the extension) commits numbered
//! rows and prints each committed id; the test SIGKILLs it at a random moment, reopens the
//! database through the extension in a process that exits normally, and then every id the
//! writer reported must be in the restored replica, which must equal the database.
//!
//! Needs: the extension (`LITESTREAM_SO`), our CLI, the official binary, `sqlite3`,
//! `/usr/bin/python3` (its sqlite3 module can load extensions).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use litestream_tests::*;

/// Inserts rows forever: single-row transactions, multi-row transactions, rolled-back big
/// transactions, and occasional multi-MB ones. Prints the ids of each committed transaction
/// on one line, after COMMIT returned.
const WRITER: &str = r#"
import random
uri, nxt, seed = ARGS[0], int(ARGS[1]), int(ARGS[2])
rnd = random.Random(seed)
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=20)
conn.execute("PRAGMA cache_size=10")
conn.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, v BLOB)")
while True:
    roll = rnd.random()
    if roll < 0.55:
        conn.execute("INSERT INTO events VALUES (?, 0, randomblob(?))", (nxt, rnd.randint(0, 3000)))
        ids = [nxt]
    elif roll < 0.88:
        ids = list(range(nxt, nxt + rnd.randint(2, 25)))
        conn.execute("BEGIN")
        for i in ids:
            conn.execute("INSERT INTO events VALUES (?, ?, randomblob(?))", (i, ids[0], rnd.randint(0, 20000)))
        conn.execute("COMMIT")
    elif roll < 0.96:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO events VALUES (?, -1, randomblob(400000))", (nxt,))
        conn.execute("UPDATE events SET v = randomblob(100) WHERE id % 3 = 0")
        conn.execute("ROLLBACK")
        continue
    else:
        ids = list(range(nxt, nxt + 3))
        conn.execute("BEGIN")
        for i in ids:
            conn.execute("INSERT INTO events VALUES (?, ?, randomblob(1048576))", (i, ids[0]))
        conn.execute("COMMIT")
    print(" ".join(map(str, ids)))
    nxt = ids[-1] + 1
"#;

fn crash_rounds(name: &str, sync_interval: &str, rounds: usize) {
    let seed = seed_from_env_or_random();
    eprintln!("{name}: seed {seed} (replay with LITESTREAM_TEST_SEED={seed}), sync-interval {sync_interval}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let s = Scratch::new(name);
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval(sync_interval)
        .write(&s.join("litestream.yml"));
    let uri = vfs_uri(&db, None);
    let mut reported: BTreeSet<i64> = BTreeSet::new();
    let mut next: i64 = 1;

    for round in 0..rounds {
        let stderr_path = s.join(format!("writer-{round}.stderr"));
        let round_seed = rng.u64(..).to_string();
        let next_s = next.to_string();
        let mut child = python_command(
            WRITER,
            &[&uri, &next_s, &round_seed],
            &[("LITESTREAM_CONFIG", &cfg)],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start the python writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<Vec<i64>>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ids: Vec<i64> = line
                    .split_whitespace()
                    .filter_map(|t| t.parse().ok())
                    .collect();
                if tx.send(ids).is_err() {
                    break;
                }
            }
        });

        // Let it commit a random number of transactions, then SIGKILL it.
        let target = rng.usize(1..=120);
        let mut seen = 0;
        while seen < target {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(ids) => {
                    reported.extend(ids);
                    seen += 1;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "round {round}: the writer stopped reporting commits ({e:?}) after {seen}:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was meant to die by SIGKILL"
        );
        reader.join().unwrap();
        // Lines printed before the kill were committed too.
        for ids in rx.try_iter() {
            reported.extend(ids);
        }

        // Reopen through the extension in a process that exits normally: the staged state of
        // the killed writer must be resumed and flushed.
        let out = sqlite3_ext(&uri, Some(&cfg), "SELECT count(*) FROM events;");
        // Kept beside the database, with the writers' stderr, for a failure's post-mortem.
        let _ = std::fs::write(s.join(format!("reopen-{round}.log")), out.to_string());
        assert!(
            out.success(),
            "round {round}: reopening after the crash failed: {out}"
        );

        let restored = s.join(format!("round-{round}.db"));
        restore_ours(&file_url(&replica), &restored);
        assert_integrity(&restored, &format!("round {round}: our restore"));
        let have: BTreeSet<i64> = query_ids(&restored, "SELECT id FROM events;")
            .into_iter()
            .collect();
        let missing: Vec<&i64> = reported.difference(&have).take(20).collect();
        assert!(
            missing.is_empty(),
            "round {round} (seed {seed}): ids reported committed but missing from the replica \
             (first 20): {missing:?}; reported {}, restored {}",
            reported.len(),
            have.len()
        );
        assert_same_dump(
            &restored,
            &db,
            &format!("round {round}: our restore vs the database"),
        );
        next = query_ids(&db, "SELECT coalesce(max(id), 0) FROM events;")[0] + 1;
    }
    assert_restores_to(&s, &replica, &db, "final");
}

#[test]
fn kill9_writer_sync_1s() {
    crash_rounds("crash-sync1s", "1s", 3);
}

#[test]
fn kill9_writer_sync_0() {
    crash_rounds("crash-sync0", "0", 3);
}

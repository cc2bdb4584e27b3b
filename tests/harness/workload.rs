//! Randomized SQL workloads, reproducible from a seed.
//!
//! A workload is a list of steps; each step is a complete unit of SQL (one transaction, a
//! rolled-back transaction, a `VACUUM`, a checkpoint, …) that runs unchanged in the `sqlite3`
//! shell (all steps joined) or through rusqlite (`execute_batch` per step). The generator keeps
//! a model of the schema so every statement is valid. Row contents come from `randomblob`, so
//! tests compare the replica with the source database, never with a model of the data.

use std::fmt::Write as _;
use std::path::Path;

use crate::db::create_with_page_size;

/// Page sizes SQLite accepts; one is chosen per workload unless fixed.
pub const PAGE_SIZES: [u32; 8] = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/// Knobs for [`Workload::generate`].
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Number of steps after the initial schema.
    pub steps: usize,
    /// Fixed page size, or None to pick one from [`PAGE_SIZES`] with the seed.
    pub page_size: Option<u32>,
    /// Allow 1 MiB blobs (multi-MB transactions).
    pub big_blobs: bool,
    /// Allow `VACUUM` steps.
    pub vacuum: bool,
    /// Allow `PRAGMA wal_checkpoint(...)` steps.
    pub checkpoints: bool,
    /// Upper bound on the bytes of blobs inserted over the whole workload.
    pub byte_budget: usize,
    /// Allow `ROLLBACK TO` a savepoint. (SQLite 3.40.1 leaves the WAL frames written after
    /// `ROLLBACK TO` a spilled savepoint with zero checksums, so its recovery after a crash
    /// drops that transaction and every later one of the WAL generation: the crash trials,
    /// which check local durability, turn it off.)
    pub savepoint_rollbacks: bool,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            steps: 40,
            page_size: None,
            big_blobs: true,
            vacuum: true,
            checkpoints: true,
            byte_budget: 24 << 20,
            savepoint_rollbacks: true,
        }
    }
}

/// A generated workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub seed: u64,
    pub page_size: u32,
    /// `PRAGMA cache_size` (pages) set by the first step: small, so big transactions spill.
    pub cache_size: u32,
    pub steps: Vec<String>,
}

/// `LITESTREAM_TEST_SEED` when set (to replay a failure), else a fresh random seed.
pub fn seed_from_env_or_random() -> u64 {
    match std::env::var("LITESTREAM_TEST_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LITESTREAM_TEST_SEED={s:?} is not a u64")),
        Err(_) => fastrand::u64(..),
    }
}

#[derive(Clone, Debug)]
struct Table {
    name: String,
    indexes: Vec<String>,
}

struct Gen {
    rng: fastrand::Rng,
    opts: WorkloadOptions,
    page_size: u32,
    tables: Vec<Table>,
    next_table: u32,
    next_index: u32,
    bytes: usize,
}

impl Workload {
    /// Generates a workload from `seed`.
    pub fn generate(seed: u64, opts: WorkloadOptions) -> Workload {
        let mut rng = fastrand::Rng::with_seed(seed);
        let page_size = opts
            .page_size
            .unwrap_or_else(|| PAGE_SIZES[rng.usize(..PAGE_SIZES.len())]);
        let cache_size = rng.u32(5..=40);
        let steps_wanted = opts.steps;
        let mut g = Gen {
            rng,
            opts,
            page_size,
            tables: Vec::new(),
            next_table: 0,
            next_index: 0,
            bytes: 0,
        };
        let mut steps = vec![format!("PRAGMA cache_size={cache_size};")];
        steps.push(g.create_table());
        steps.push(g.insert(0));
        for _ in 0..steps_wanted {
            steps.push(g.step());
        }
        Workload {
            seed,
            page_size,
            cache_size,
            steps,
        }
    }

    /// A random seed (or `LITESTREAM_TEST_SEED`) with `opts`.
    pub fn random(opts: WorkloadOptions) -> Workload {
        Workload::generate(seed_from_env_or_random(), opts)
    }

    /// All steps as one shell script.
    pub fn script(&self) -> String {
        let mut s = String::new();
        for step in &self.steps {
            s.push_str(step);
            s.push('\n');
        }
        s
    }

    /// One line to print before running, so a failure can be replayed.
    pub fn describe(&self) -> String {
        format!(
            "workload seed={} (replay with LITESTREAM_TEST_SEED={}), page_size={}, cache_size={}, steps={}",
            self.seed,
            self.seed,
            self.page_size,
            self.cache_size,
            self.steps.len()
        )
    }

    /// Prepares `db` for this workload: a non-default page size must be set before the
    /// database exists in WAL mode, so such databases are created first with the plain shell.
    /// With the default 4096 nothing is done and the extension creates the database itself.
    pub fn prepare_db(&self, db: &Path) {
        if self.page_size != 4096 {
            create_with_page_size(db, self.page_size);
        }
    }
}

impl Gen {
    fn table(&mut self) -> usize {
        self.rng.usize(..self.tables.len())
    }

    /// A blob size: mostly small, some larger than a page (overflow chains), rarely 1 MiB.
    fn blob_size(&mut self) -> (usize, usize) {
        let roll = self.rng.u32(..100);
        let left = self.opts.byte_budget.saturating_sub(self.bytes);
        if roll < 8 && self.opts.big_blobs && left > 4 << 20 {
            (1 << 20, self.rng.usize(1..=3))
        } else if roll < 25 {
            let ps = self.page_size as usize;
            (self.rng.usize(ps / 2..=ps * 3), self.rng.usize(1..=20))
        } else {
            (self.rng.usize(0..=300), self.rng.usize(1..=200))
        }
    }

    fn create_table(&mut self) -> String {
        let name = format!("t{}", self.next_table);
        self.next_table += 1;
        self.tables.push(Table {
            name: name.clone(),
            indexes: Vec::new(),
        });
        format!("CREATE TABLE {name}(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT, v BLOB);")
    }

    fn insert(&mut self, t: usize) -> String {
        let (size, rows) = self.blob_size();
        let rows = if size * rows + self.bytes > self.opts.byte_budget {
            1
        } else {
            rows
        };
        let size = if size * rows + self.bytes > self.opts.byte_budget {
            16
        } else {
            size
        };
        self.bytes += size * rows;
        let name = &self.tables[t].name;
        format!(
            "INSERT INTO {name}(k, s, v) SELECT abs(random()) % 1000, 'r' || x, randomblob({size}) \
             FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c);"
        )
    }

    fn update(&mut self, t: usize) -> String {
        let m = self.rng.u32(2..=7);
        let r = self.rng.u32(..m);
        let size = self.rng.usize(0..=self.page_size as usize * 2);
        let name = &self.tables[t].name;
        format!("UPDATE {name} SET k = k + 1, v = randomblob({size}) WHERE id % {m} = {r};")
    }

    fn delete(&mut self, t: usize) -> String {
        let m = self.rng.u32(2..=9);
        let r = self.rng.u32(..m);
        let name = &self.tables[t].name;
        format!("DELETE FROM {name} WHERE id % {m} = {r};")
    }

    /// A data-changing statement on some table.
    fn dml(&mut self) -> String {
        let t = self.table();
        match self.rng.u32(..10) {
            0..=4 => self.insert(t),
            5..=7 => self.update(t),
            _ => self.delete(t),
        }
    }

    fn step(&mut self) -> String {
        match self.rng.u32(..100) {
            0..=29 => self.dml(),
            30..=44 => {
                // several statements in one explicit transaction
                let n = self.rng.usize(2..=5);
                let mut s = String::from("BEGIN;\n");
                for _ in 0..n {
                    let _ = writeln!(s, "{}", self.dml());
                }
                s.push_str("COMMIT;");
                s
            }
            45..=55 if !self.opts.savepoint_rollbacks => self.dml(),
            45..=51 => {
                // savepoints: part rolled back, part kept
                let keep = self.dml();
                let lost = self.dml();
                let kept2 = self.dml();
                format!(
                    "BEGIN;\nSAVEPOINT a;\n{keep}\nSAVEPOINT b;\n{lost}\nROLLBACK TO b;\n{kept2}\nRELEASE a;\nCOMMIT;"
                )
            }
            52..=55 => {
                // a savepoint used as the outer transaction, rolled back entirely
                let lost = self.dml();
                format!("SAVEPOINT only;\n{lost}\nROLLBACK TO only;\nRELEASE only;")
            }
            56..=61 => {
                // explicit BEGIN … ROLLBACK, big enough to spill with the small cache
                let t = self.table();
                let before = self.bytes;
                let a = self.insert(t);
                let b = self.update(t);
                self.bytes = before; // rolled back: does not count
                format!("BEGIN;\n{a}\n{b}\nROLLBACK;")
            }
            62..=65 => {
                // the same page rewritten many times in one transaction
                let t = self.table();
                let name = &self.tables[t].name;
                let n = self.rng.usize(3..=12);
                let mut s = String::from("BEGIN;\n");
                for i in 0..n {
                    let _ = writeln!(
                        s,
                        "UPDATE {name} SET k = k + {i}, s = 'rewrite-{i}' WHERE id = (SELECT min(id) FROM {name});"
                    );
                }
                s.push_str("COMMIT;");
                s
            }
            66..=70 if self.tables.len() < 6 => self.create_table(),
            71..=73 if self.tables.len() > 1 => {
                let t = self.table();
                let table = self.tables.remove(t);
                format!("DROP TABLE {};", table.name)
            }
            74..=78 => {
                let t = self.table();
                let idx = format!("i{}", self.next_index);
                self.next_index += 1;
                let col = if self.rng.bool() { "k" } else { "s, k" };
                let name = self.tables[t].name.clone();
                self.tables[t].indexes.push(idx.clone());
                format!("CREATE INDEX {idx} ON {name}({col});")
            }
            79..=81 => {
                let t = self.table();
                if self.tables[t].indexes.is_empty() {
                    self.dml()
                } else {
                    let i = self.rng.usize(..self.tables[t].indexes.len());
                    let idx = self.tables[t].indexes.remove(i);
                    format!("DROP INDEX {idx};")
                }
            }
            82..=85 if self.opts.vacuum => "VACUUM;".to_string(),
            86..=90 if self.opts.checkpoints => {
                let mode =
                    ["PASSIVE", "FULL", "RESTART", "TRUNCATE", "TRUNCATE"][self.rng.usize(..5)];
                format!("PRAGMA wal_checkpoint({mode});")
            }
            91..=94 => {
                // shrink: delete most rows of a table
                let t = self.table();
                let name = &self.tables[t].name;
                format!("DELETE FROM {name} WHERE id % 10 != 0;")
            }
            _ => self.dml(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload() {
        let a = Workload::generate(42, WorkloadOptions::default());
        let b = Workload::generate(42, WorkloadOptions::default());
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.page_size, b.page_size);
        let c = Workload::generate(43, WorkloadOptions::default());
        assert_ne!(a.steps, c.steps);
    }

    #[test]
    fn workloads_are_valid_sql_for_sqlite() {
        // Runs generated workloads in memory with the system SQLite (no extension).
        for seed in 0..20u64 {
            let w = Workload::generate(
                seed,
                WorkloadOptions {
                    big_blobs: seed % 5 == 0,
                    byte_budget: 8 << 20,
                    ..WorkloadOptions::default()
                },
            );
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            conn.execute_batch(&format!("PRAGMA page_size={};", w.page_size))
                .unwrap();
            for step in &w.steps {
                conn.execute_batch(step)
                    .unwrap_or_else(|e| panic!("{}: step {step:?}: {e}", w.describe()));
            }
        }
    }

    #[test]
    fn savepoint_rollbacks_can_be_turned_off() {
        let opts = WorkloadOptions {
            steps: 400,
            savepoint_rollbacks: false,
            ..WorkloadOptions::default()
        };
        let w = Workload::generate(7, opts.clone());
        assert!(w.steps.iter().all(|s| !s.contains("ROLLBACK TO")));
        let w = Workload::generate(
            7,
            WorkloadOptions {
                savepoint_rollbacks: true,
                ..opts
            },
        );
        assert!(w.steps.iter().any(|s| s.contains("ROLLBACK TO")));
    }

    #[test]
    fn page_sizes_vary_with_the_seed() {
        let sizes: std::collections::BTreeSet<u32> = (0..200u64)
            .map(|s| Workload::generate(s, WorkloadOptions::default()).page_size)
            .collect();
        assert!(sizes.contains(&512) && sizes.contains(&65536), "{sizes:?}");
    }
}

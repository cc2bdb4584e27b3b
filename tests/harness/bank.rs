//! The bank-transfer workload of the read replica tests: a writer moves money between
//! accounts (the total never changes), bumps a sequence number in the same transaction and
//! keeps a history table growing and shrinking; readers check the total, the account count and
//! that the sequence never goes back, in every read transaction.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// Number of accounts and the starting balance of each.
pub const ACCOUNTS: i64 = 100;
pub const START_BALANCE: i64 = 1000;
/// The invariant: the sum of balances.
pub const TOTAL: i64 = ACCOUNTS * START_BALANCE;

/// Python writer (`python_command(BANK_WRITER, [uri, stop_file, seed, load], …)`): `load` is
/// `1` to load the extension first (the URI then names `vfs=litestream`), `0` for plain SQLite
/// (a primary replicated by the official `litestream replicate`). Writes until `stop_file`
/// exists, then prints the number of transfers and the final sequence number.
pub const BANK_WRITER: &str = r#"
import random, time
uri, stop, seed, load = ARGS[0], ARGS[1], int(ARGS[2]), ARGS[3] == "1"
rnd = random.Random(seed)
if load:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(SO)
    boot.close()
db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS seq(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS history(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, amt INTEGER, memo TEXT)")
db.execute("CREATE INDEX IF NOT EXISTS history_a ON history(a)")
if db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
    db.execute("BEGIN")
    db.executemany("INSERT INTO accounts VALUES (?, 1000)", [(i,) for i in range(1, 101)])
    db.execute("INSERT INTO seq VALUES (1, 0)")
    db.execute("COMMIT")
n = 0
while not os.path.exists(stop):
    a, b = rnd.sample(range(1, 101), 2)
    amt = rnd.randint(1, 50)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE accounts SET bal = bal - ? WHERE id = ?", (amt, a))
    db.execute("UPDATE accounts SET bal = bal + ? WHERE id = ?", (amt, b))
    db.execute("INSERT INTO history(a, b, amt, memo) VALUES (?, ?, ?, ?)", (a, b, amt, os.urandom(rnd.randint(10, 600)).hex()))
    db.execute("UPDATE seq SET n = n + 1")
    db.execute("COMMIT")
    n += 1
    # A breath between transactions: a process replicating this database (the official
    # litestream) must get the write lock for its own bookkeeping under this load.
    time.sleep(0.0003)
    if n % 250 == 0:
        db.execute("DELETE FROM history WHERE id < (SELECT max(id) - 200 FROM history)")
    if n % 1000 == 0:
        db.execute("VACUUM")
print(n, db.execute("SELECT n FROM seq").fetchone()[0])
"#;

/// Python reader on a replica file with plain SQLite (no extension): `ARGS = [path,
/// stop_file]`. Checks the invariant in every read transaction, runs `integrity_check` every
/// 25 reads, and prints `reads=… violations=… backwards=… errors=… states=…` at the end.
pub const BANK_READER: &str = r#"
import time
path, stop = ARGS[0], ARGS[1]
while not os.path.exists(path):
    time.sleep(0.05)
c = sqlite3.connect("file:" + path + "?mode=ro", uri=True, timeout=10, isolation_level=None)
reads = violations = backwards = errors = 0
last = -1
states = set()
while not os.path.exists(stop):
    try:
        c.execute("BEGIN")
        s, k = c.execute("SELECT sum(bal), count(*) FROM accounts").fetchone()
        q = c.execute("SELECT n FROM seq").fetchone()[0]
        ic = c.execute("PRAGMA integrity_check").fetchone()[0] if reads % 25 == 0 else "ok"
        c.execute("COMMIT")
    except sqlite3.OperationalError as e:
        errors += 1
        print("error:", e, flush=True)
        try:
            c.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
        continue
    reads += 1
    states.add(q)
    if s != 100000 or k != 100 or ic != "ok":
        violations += 1
        print("violation:", s, k, q, ic, flush=True)
    if q < last:
        backwards += 1
        print("backwards:", last, "->", q, flush=True)
    last = max(last, q)
print(f"reads={reads} violations={violations} backwards={backwards} errors={errors} states={len(states)}")
"#;

/// What one read transaction saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankRead {
    pub total: i64,
    pub accounts: i64,
    pub seq: i64,
}

impl BankRead {
    pub fn consistent(&self) -> bool {
        self.total == TOTAL && self.accounts == ACCOUNTS
    }
}

/// Reads the invariant's inputs in one read transaction.
pub fn bank_read(c: &Connection) -> rusqlite::Result<BankRead> {
    c.execute_batch("BEGIN")?;
    let res = (|| -> rusqlite::Result<BankRead> {
        let (total, accounts) =
            c.query_row("SELECT sum(bal), count(*) FROM accounts", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
        let seq = c.query_row("SELECT n FROM seq", [], |r| r.get(0))?;
        Ok(BankRead {
            total,
            accounts,
            seq,
        })
    })();
    let end = c.execute_batch("COMMIT");
    let r = res?;
    end?;
    Ok(r)
}

/// The sequence number of a bank database read with plain SQLite (`None` before the tables
/// exist).
pub fn bank_seq(db: &Path) -> Option<i64> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
    c.query_row("SELECT n FROM seq", [], |r| r.get(0)).ok()
}

/// Every account's balance, for comparing a replica with its primary.
pub fn bank_balances(db: &Path) -> Vec<(i64, i64)> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let mut st = c
        .prepare("SELECT id, bal FROM accounts ORDER BY id")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

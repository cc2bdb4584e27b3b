//! Applying a batch to the local replica database as one SQLite-compatible write transaction
//! (docs/read-replicas.md, "Applying"):
//!
//! 1. SHARED, then RESERVED (one writer at a time; readers continue).
//! 2. A hot journal left by a crashed apply is rolled back first.
//! 3. The database's change counter says which primary state it holds (`follower.json`).
//! 4. PENDING → EXCLUSIVE within the drain window ([`super::lock`]); otherwise the locks are
//!    released and the apply retried later.
//! 5. The original content of every page about to change goes to `<db>-journal` (SQLite's
//!    rollback journal format), fsynced with its directory. It exists only while no reader
//!    holds a lock, so readers never see it unless an apply crashed.
//! 6. Pages are written (page 1 with rollback mode, a new change counter and the size), the file
//!    truncated when the database shrank, fsynced; deleting the journal commits.
//!
//! A crash before the journal is deleted leaves it hot: the next SQLite connection with write
//! access, or the follower, restores the previous state from it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use super::batch::Batch;
use super::dbheader;
use super::journal::{self, JournalHeader};
use super::lock::{acquire, LockLevel, LockPolicy};
use super::state::{FollowerState, MetaFiles, Pending};
use super::FollowError;
use crate::TxId;

/// Sector size written into journal headers when the file reports none usable; SQLite's
/// default for unix files.
const DEFAULT_SECTOR_SIZE: u32 = 4096;
/// Journal write buffer: typical applies are written with a few system calls.
const JOURNAL_BUFFER_BYTES: usize = 256 * 1024;

/// The database file as the follower uses it: positioned I/O and SQLite's locks, through the
/// default VFS (so that locks are coordinated with SQLite connections in this process).
pub trait DbFile {
    /// Reads `buf.len()` bytes at `off`; bytes past the end of the file read as zeros.
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()>;
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
    fn size(&mut self) -> io::Result<u64>;
    fn truncate(&mut self, size: u64) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    /// `Ok(false)`: busy (another connection holds a conflicting lock).
    fn lock(&mut self, level: LockLevel) -> io::Result<bool>;
    /// Down to `level` (`None` or `Shared`).
    fn unlock(&mut self, level: LockLevel) -> io::Result<()>;
    fn sector_size(&mut self) -> u32;
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The database now holds TXID `txid`; `pages` pages were written.
    Applied { txid: TxId, pages: usize },
    /// Held off by readers or another writer for longer than the policy allows: retry later.
    Deferred(&'static str),
    /// The database already holds this batch's state or a later one.
    AlreadyAt(TxId),
    /// The batch does not continue the database's state (TXID `at`): plan again from there.
    Replan { at: TxId },
    /// The database's state is unknown (changed outside the follower, another replica, another
    /// page size): only a full batch (a rebase) can be applied.
    Unknown(String),
}

/// The state of the database file read under a lock.
struct View {
    page_size: u32,
    pages: u32,
    counter: u32,
}

fn read_view(file: &mut dyn DbFile) -> io::Result<Option<View>> {
    let size = file.size()?;
    if size < dbheader::HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut hdr = [0u8; dbheader::HEADER_LEN];
    file.read_at(&mut hdr, 0)?;
    let Some(page_size) = dbheader::page_size(&hdr) else {
        return Ok(None);
    };
    Ok(Some(View {
        page_size,
        pages: (size / u64::from(page_size)) as u32,
        counter: dbheader::change_counter(&hdr),
    }))
}

fn db_io(op: &'static str) -> impl FnOnce(io::Error) -> FollowError {
    move |source| FollowError::Db { op, source }
}

/// The TXID the database holds according to `follower.json`, read under a SHARED lock;
/// `None` when unknown. `Err` only for I/O failures; busy is reported as `Ok(None)`.
pub fn current_txid(
    file: &mut dyn DbFile,
    meta: &MetaFiles,
    replica: &str,
    policy: &LockPolicy,
) -> Result<Option<TxId>, FollowError> {
    if !acquire(policy.shared_wait, || file.lock(LockLevel::Shared)).map_err(db_io("lock"))? {
        return Ok(None);
    }
    let res = (|| {
        let Some(view) = read_view(file).map_err(db_io("read header"))? else {
            return Ok(None);
        };
        Ok(meta
            .load()?
            .filter(|s| s.replica == replica)
            .and_then(|s| s.txid_for_counter(view.counter)))
    })();
    file.unlock(LockLevel::None).map_err(db_io("unlock"))?;
    res
}

/// Rolls back a hot journal left by an interrupted apply, if any (taking the locks itself).
/// Returns false when readers held the file too long to do it now.
pub fn recover(
    file: &mut dyn DbFile,
    journal_path: &Path,
    policy: &LockPolicy,
) -> Result<bool, FollowError> {
    if fs::symlink_metadata(journal_path).is_err() {
        return Ok(true);
    }
    with_locks(file, policy, |file| {
        Ok(recover_locked(file, journal_path, policy, Duration::ZERO)?
            .map_or(Outcome::AlreadyAt(0), Outcome::Deferred))
    })
    .map(|o| !matches!(o, Outcome::Deferred(_)))
}

/// Takes SHARED and RESERVED, runs `f`, and releases every lock whatever happens.
fn with_locks(
    file: &mut dyn DbFile,
    policy: &LockPolicy,
    f: impl FnOnce(&mut dyn DbFile) -> Result<Outcome, FollowError>,
) -> Result<Outcome, FollowError> {
    if !acquire(policy.shared_wait, || file.lock(LockLevel::Shared)).map_err(db_io("lock"))? {
        return Ok(Outcome::Deferred(
            "another connection is writing or rolling back the database",
        ));
    }
    let res = match file.lock(LockLevel::Reserved) {
        Ok(true) => f(file),
        Ok(false) => Ok(Outcome::Deferred("another writer holds the database")),
        Err(e) => Err(db_io("lock")(e)),
    };
    let unlocked = file.unlock(LockLevel::None).map_err(db_io("unlock"));
    let out = res?;
    unlocked?;
    Ok(out)
}

/// With RESERVED held: if a journal exists it is hot (no other writer can hold RESERVED), so
/// play it back under EXCLUSIVE. `Some(reason)`: deferred, readers did not leave in time.
fn recover_locked(
    file: &mut dyn DbFile,
    journal_path: &Path,
    policy: &LockPolicy,
    deferred_for: Duration,
) -> Result<Option<&'static str>, FollowError> {
    let jerr = |op: &'static str| FollowError::io(journal_path, op);
    let jf = match File::open(journal_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(jerr("open")(e)),
    };
    let len = jf.metadata().map_err(jerr("stat"))?.len();
    let plan =
        journal::plan_rollback(len, |off, buf| jf.read_exact_at(buf, off)).map_err(jerr("read"))?;
    let Some(plan) = plan else {
        // Not hot (zeroed or empty): SQLite would ignore it too.
        remove_journal(journal_path)?;
        return Ok(None);
    };
    let drain = policy.drain_wait_for(deferred_for);
    if !acquire(drain, || file.lock(LockLevel::Exclusive)).map_err(db_io("lock"))? {
        return Ok(Some(
            "readers hold the database; an interrupted apply waits to be rolled back",
        ));
    }
    let target = u64::from(plan.original_pages) * u64::from(plan.page_size);
    if file.size().map_err(db_io("stat"))? > target {
        file.truncate(target).map_err(db_io("truncate"))?;
    }
    let mut page = vec![0u8; plan.page_size as usize];
    for &(pgno, off) in &plan.pages {
        jf.read_exact_at(&mut page, off).map_err(jerr("read"))?;
        file.write_at(&page, u64::from(pgno - 1) * u64::from(plan.page_size))
            .map_err(db_io("write"))?;
    }
    file.sync().map_err(db_io("fsync"))?;
    remove_journal(journal_path)?;
    tracing::warn!(journal = %journal_path.display(), pages = plan.pages.len(), "rolled back an interrupted apply");
    Ok(None)
}

fn remove_journal(path: &Path) -> Result<(), FollowError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FollowError::io(path, "delete journal")(e)),
    }
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), FollowError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FollowError::io(dir, "fsync directory"))
}

/// What to do with a batch given the database's TXID (`None`: unknown). Pure.
pub fn decide(db_txid: Option<TxId>, batch: (TxId, TxId), full: bool) -> Option<Outcome> {
    let (first_min, txid) = batch;
    match db_txid {
        _ if full => None,
        None => Some(Outcome::Unknown(
            "the local file's change counter matches no recorded state".to_string(),
        )),
        Some(t) if txid <= t => Some(Outcome::AlreadyAt(t)),
        Some(t) if first_min > t.saturating_add(1) => Some(Outcome::Replan { at: t }),
        Some(_) => None,
    }
}

/// Everything an apply needs besides the file.
pub struct ApplyContext<'a> {
    pub journal_path: &'a Path,
    pub meta: &'a MetaFiles,
    /// URL of the replica followed (recorded in `follower.json`).
    pub replica: &'a str,
    pub policy: &'a LockPolicy,
    /// How long applies have been held off by readers so far (for escalation).
    pub deferred_for: Duration,
}

/// Applies `batch` as one write transaction (see the module documentation).
pub fn apply(
    file: &mut dyn DbFile,
    ctx: &ApplyContext<'_>,
    batch: &Batch,
) -> Result<Outcome, FollowError> {
    with_locks(file, ctx.policy, |file| apply_reserved(file, ctx, batch))
}

fn apply_reserved(
    file: &mut dyn DbFile,
    ctx: &ApplyContext<'_>,
    batch: &Batch,
) -> Result<Outcome, FollowError> {
    if ctx.meta.primary_state_path().exists() {
        return Err(FollowError::Config(
            "the replica was promoted to a primary; nothing more is applied".to_string(),
        ));
    }
    if let Some(reason) = recover_locked(file, ctx.journal_path, ctx.policy, ctx.deferred_for)? {
        return Ok(Outcome::Deferred(reason));
    }
    let view = read_view(file).map_err(db_io("read header"))?;
    let state = ctx.meta.load()?.filter(|s| s.replica == ctx.replica);
    let db_txid = match (&view, &state) {
        (Some(v), Some(s)) => s.txid_for_counter(v.counter),
        _ => None,
    };
    if let Some(o) = decide(db_txid, (batch.first_min, batch.txid), batch.full) {
        return Ok(o);
    }
    let Some(view) = view.filter(|v| v.pages > 0) else {
        // An empty or foreign file has no state to roll back to; the caller restores instead.
        return Ok(Outcome::Unknown(
            "the local file is not a database".to_string(),
        ));
    };
    if !batch.full && view.page_size != batch.page_size {
        return Ok(Outcome::Unknown(format!(
            "the replica's page size {} differs from the local file's {}",
            batch.page_size, view.page_size
        )));
    }
    check_complete(batch, &view)?;
    let counter = dbheader::next_counter(view.counter);
    let changed = changed_pages(file, batch, &view)?;

    let drain = ctx.policy.drain_wait_for(ctx.deferred_for);
    if !acquire(drain, || file.lock(LockLevel::Exclusive)).map_err(db_io("lock"))? {
        return Ok(Outcome::Deferred(
            "readers did not finish within the drain window",
        ));
    }
    // The journal exists only while no connection holds SHARED: a read-only connection never
    // sees it (SQLite's hot-journal check could otherwise take a journal being deleted for a
    // hot one and fail with SQLITE_READONLY_ROLLBACK).
    write_journal(file, ctx.journal_path, &changed, &view, batch.page_size)?;
    let mut pending = state.unwrap_or_else(|| FollowerState {
        replica: ctx.replica.to_string(),
        txid: 0,
        counter: view.counter,
        pending: None,
    });
    pending.pending = Some(Pending {
        txid: batch.txid,
        counter,
    });
    ctx.meta.save(&pending)?;
    if let Err(e) =
        write_pages(file, batch, &changed, counter).and_then(|()| remove_journal(ctx.journal_path))
    {
        // Still EXCLUSIVE: put the previous state back now rather than leave a hot journal
        // that read-only connections cannot roll back.
        if let Err(re) = recover_locked(file, ctx.journal_path, ctx.policy, ctx.deferred_for) {
            tracing::error!(error = %re, "cannot roll back a failed apply; the journal stays hot");
        }
        return Err(e);
    }
    let committed = FollowerState {
        replica: ctx.replica.to_string(),
        txid: batch.txid,
        counter,
        pending: None,
    };
    if let Err(e) = ctx.meta.save(&committed) {
        // The pending record still identifies the new state by its change counter.
        tracing::warn!(error = %e, "cannot record the applied TXID; the pending record covers it");
    }
    Ok(Outcome::Applied {
        txid: batch.txid,
        pages: changed.len(),
    })
}

/// Every page the database will hold must exist after the apply: pages above the current size
/// must be in the batch (all of them for a full batch). The lock page is never stored.
fn check_complete(batch: &Batch, view: &View) -> Result<(), FollowError> {
    let lock = crate::ltx::lock_pgno(batch.page_size);
    let from = if batch.full || view.page_size != batch.page_size {
        1
    } else {
        view.pages + 1
    };
    match (from..=batch.commit).find(|&p| p != lock && !batch.pages.contains(p)) {
        Some(pgno) => Err(FollowError::MissingPage {
            pgno,
            commit: batch.commit,
            txid: batch.txid,
        }),
        None => Ok(()),
    }
}

/// The page numbers to write, ascending: pages whose content changes (unchanged ones are
/// skipped) and page 1 (its change counter always changes).
fn changed_pages(
    file: &mut dyn DbFile,
    batch: &Batch,
    view: &View,
) -> Result<Vec<u32>, FollowError> {
    let same_size = view.page_size == batch.page_size;
    let ps = batch.page_size as usize;
    let mut changed = Vec::with_capacity(batch.pages.len() + 1);
    if !batch.pages.contains(1) {
        changed.push(1);
    }
    let mut new = vec![0u8; ps];
    let mut old = vec![0u8; ps];
    for pgno in batch.pages.pgnos() {
        if pgno != 1 && same_size && pgno <= view.pages {
            batch
                .pages
                .get(pgno, &mut new)
                .map_err(|e| FollowError::Db {
                    op: "read spool",
                    source: e,
                })?;
            file.read_at(&mut old, u64::from(pgno - 1) * ps as u64)
                .map_err(db_io("read"))?;
            if new == old {
                continue;
            }
        }
        changed.push(pgno);
    }
    changed.sort_unstable();
    Ok(changed)
}

/// Writes the original content of the `changed` pages that exist now (every page when the
/// page size changes: a rollback then restores the old layout whole) into the journal, and
/// fsyncs it with its directory.
fn write_journal(
    file: &mut dyn DbFile,
    path: &Path,
    changed: &[u32],
    view: &View,
    new_page_size: u32,
) -> Result<(), FollowError> {
    let jerr = |op: &'static str| FollowError::io(path, op);
    let originals: Vec<u32> = if view.page_size == new_page_size {
        changed
            .iter()
            .copied()
            .filter(|&p| p <= view.pages)
            .collect()
    } else {
        (1..=view.pages).collect()
    };
    let sector = match file.sector_size() {
        s if (journal::MIN_SECTOR_SIZE.max(512)..=journal::MAX_SECTOR_SIZE).contains(&s)
            && s.is_power_of_two() =>
        {
            s
        }
        _ => DEFAULT_SECTOR_SIZE,
    };
    let header = JournalHeader {
        record_count: originals.len() as u32,
        nonce: fastrand::u32(..),
        original_pages: view.pages,
        sector_size: sector,
        page_size: view.page_size,
    };
    let f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(jerr("create journal"))?;
    let mut w = BufWriter::with_capacity(JOURNAL_BUFFER_BYTES, f);
    w.write_all(&header.encode()).map_err(jerr("write"))?;
    let vps = view.page_size as usize;
    let mut page = vec![0u8; vps];
    let mut rec = Vec::with_capacity(vps + 8);
    for &pgno in &originals {
        file.read_at(&mut page, u64::from(pgno - 1) * vps as u64)
            .map_err(db_io("read"))?;
        rec.clear();
        journal::encode_record(pgno, &page, header.nonce, &mut rec);
        w.write_all(&rec).map_err(jerr("write"))?;
    }
    let f = w.into_inner().map_err(|e| jerr("write")(e.into_error()))?;
    f.sync_all().map_err(jerr("fsync"))?;
    sync_parent(path)
}

/// Writes the changed pages (page 1 patched for the replica), sets the size, fsyncs.
fn write_pages(
    file: &mut dyn DbFile,
    batch: &Batch,
    changed: &[u32],
    counter: u32,
) -> Result<(), FollowError> {
    let ps = u64::from(batch.page_size);
    let mut page = vec![0u8; batch.page_size as usize];
    for &pgno in changed {
        let held = batch
            .pages
            .get(pgno, &mut page)
            .map_err(|e| FollowError::Db {
                op: "read spool",
                source: e,
            })?;
        if !held {
            // Only page 1 may be absent from the batch: patch the current one.
            file.read_at(&mut page, 0).map_err(db_io("read"))?;
        }
        if pgno == 1 {
            dbheader::patch_for_replica(&mut page, counter, batch.commit);
        }
        file.write_at(&page, u64::from(pgno - 1) * ps)
            .map_err(db_io("write"))?;
    }
    let want = u64::from(batch.commit) * ps;
    if file.size().map_err(db_io("stat"))? != want {
        file.truncate(want).map_err(db_io("truncate"))?;
    }
    file.sync().map_err(db_io("fsync"))
}

/// Switches a freshly restored file to rollback-journal mode with a new change counter;
/// returns the counter.
pub(super) fn patch_page1_file(path: &Path, page_count: u32) -> Result<u32, FollowError> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(FollowError::io(path, "open"))?;
    let mut hdr = [0u8; dbheader::HEADER_LEN];
    f.read_exact_at(&mut hdr, 0)
        .map_err(FollowError::io(path, "read header"))?;
    let counter = dbheader::next_counter(dbheader::change_counter(&hdr));
    dbheader::patch_for_replica(&mut hdr, counter, page_count);
    f.write_all_at(&hdr, 0)
        .map_err(FollowError::io(path, "write header"))?;
    f.sync_all().map_err(FollowError::io(path, "fsync"))?;
    Ok(counter)
}

#[cfg(test)]
mod tests;

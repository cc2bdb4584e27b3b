//! Applying a restore plan (spec §4.3): stream each planned file through the LTX decoder into
//! a temp file beside the output, check headers and checksums, then rename into place.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::fetch::{self, Source};
use super::pages::PageWriter;
use super::plan::{plan, PlanError, Target};
use crate::ltx::{self, Decoder, Header, LinkError, LtxError};
use crate::replica::{LtxFileInfo, ReplicaClient, ReplicaError};
use crate::{format_txid, TxId};

/// Default number of files downloaded ahead for remote replicas.
pub const DEFAULT_PARALLELISM: usize = 8;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub target: Target,
    /// Succeed without restoring when the output path exists.
    pub if_db_not_exists: bool,
    /// Succeed without restoring when the replica has no usable files.
    pub if_replica_exists: bool,
    /// Overwrite a non-empty output and remove its `-wal`, `-shm` and `-journal` files.
    pub force: bool,
    /// Files downloaded ahead for remote replicas (the file backend reads sequentially).
    pub parallelism: usize,
}

impl RestoreOptions {
    /// Latest state into `output`, no flags, default parallelism.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            output: output.into(),
            target: Target::Latest,
            if_db_not_exists: false,
            if_replica_exists: false,
            force: false,
            parallelism: DEFAULT_PARALLELISM,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored {
        txid: TxId,
        page_size: u32,
        page_count: u32,
        files: usize,
    },
    /// `if_db_not_exists` and the output exists: nothing was done.
    DbExists,
    /// `if_replica_exists` and the replica has no usable files: nothing was done.
    NoReplica,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Replica(#[from] ReplicaError),
    #[error("cannot list replica {replica}: {source}")]
    List {
        replica: String,
        source: ReplicaError,
    },
    #[error("{key}: download: {source}")]
    Download { key: String, source: io::Error },
    #[error("{key}: {source}")]
    Decode { key: String, source: LtxError },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// The restored image is not one SQLite would open; nothing was written.
    #[error("{key}: {source}; nothing was written")]
    NotADatabase { key: String, source: NotADatabase },
    #[error(
        "restored database is incomplete: page {pgno} of {commit} (the size set by {key}) is in \
         no planned file; the replica is damaged"
    )]
    MissingPage { pgno: u32, commit: u32, key: String },
    #[error(
        "output file {path} already exists and is not empty; use -force to overwrite it, \
         or -if-db-not-exists to keep it"
    )]
    OutputExists { path: PathBuf },
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Why a restored image is not a SQLite database.
#[derive(Debug, thiserror::Error)]
pub enum NotADatabase {
    #[error("the last file says the database has 0 pages (commit 0); that is no database")]
    NoPages,
    #[error("cannot read back page 1: {0}")]
    ReadBack(io::Error),
    #[error(
        "page 1 does not start with the SQLite header ('SQLite format 3'); the replica does not \
         hold a SQLite database"
    )]
    NoHeader,
    #[error("page 1 says the page size is {claimed} but the LTX files use {page_size}")]
    PageSize { claimed: u32, page_size: u32 },
}

impl RestoreError {
    fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> RestoreError {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { path, op, source }
    }
}

/// Lists the replica and plans the restore (what `-dry-run` prints).
pub fn plan_replica(
    client: &dyn ReplicaClient,
    target: &Target,
) -> Result<Vec<LtxFileInfo>, RestoreError> {
    let mut files = client.list_all().map_err(|source| RestoreError::List {
        replica: client.describe(),
        source,
    })?;
    if matches!(target, Target::Timestamp(_)) {
        // Listing may only give upload times; a point-in-time restore needs the LTX times.
        client
            .resolve_timestamps(&mut files)
            .map_err(|source| RestoreError::List {
                replica: client.describe(),
                source,
            })?;
    }
    Ok(plan(&files, target)?)
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn sidecar(output: &Path, suffix: &str) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes the temp file on drop unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(err) = fs::remove_file(&p) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %err, "cannot remove temp file");
                }
            }
        }
    }
}

/// Told how a restore advances (the CLI's progress bar); called on the restoring thread.
pub trait RestoreProgress {
    /// The plan: `files` LTX files of `bytes` bytes in all, to download and apply.
    fn start(&self, files: usize, bytes: u64);
    /// One more file (of `bytes` bytes) was applied.
    fn file_done(&self, bytes: u64);
}

/// No progress reporting.
pub struct NoProgress;

impl RestoreProgress for NoProgress {
    fn start(&self, _files: usize, _bytes: u64) {}
    fn file_done(&self, _bytes: u64) {}
}

/// Restores the replica into `opts.output`. On error nothing is left at the output path (an
/// existing output is untouched) and no temp file remains.
pub fn restore(
    client: &dyn ReplicaClient,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    restore_with_progress(client, opts, &NoProgress)
}

/// [`restore`], telling `progress` how it advances.
pub fn restore_with_progress(
    client: &dyn ReplicaClient,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreOutcome, RestoreError> {
    let output = &opts.output;
    if opts.if_db_not_exists && exists(output) {
        tracing::info!(path = %output.display(), "database already exists, skipping restore");
        return Ok(RestoreOutcome::DbExists);
    }
    let planned = match plan_replica(client, &opts.target) {
        Ok(p) => p,
        Err(RestoreError::Plan(PlanError::NoFiles | PlanError::TxIdOutOfRange { .. }))
            if opts.if_replica_exists =>
        {
            tracing::info!(replica = %client.describe(), "no matching backups found, skipping restore");
            return Ok(RestoreOutcome::NoReplica);
        }
        Err(e) => return Err(e),
    };
    check_output(opts)?;
    if let (Target::TxId(want), Some(last)) = (opts.target, planned.last()) {
        if last.max_txid < want {
            tracing::info!(
                requested = %format_txid(want),
                restoring = %format_txid(last.max_txid),
                "the requested TXID is not a restorable point after compaction and retention; \
                 restoring the newest state before it"
            );
        }
    }
    let started = Instant::now();
    let spool = opts.parallelism > 1 && !client.is_local() && planned.len() > 1;
    progress.start(planned.len(), planned.iter().map(|f| f.size).sum());
    let outcome = apply_plan(client, &planned, opts, spool, progress)?;
    if let RestoreOutcome::Restored {
        txid, page_count, ..
    } = &outcome
    {
        tracing::info!(
            replica = %client.describe(),
            path = %output.display(),
            txid = %format_txid(*txid),
            pages = page_count,
            files = planned.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restore complete"
        );
    }
    Ok(outcome)
}

fn check_output(opts: &RestoreOptions) -> Result<(), RestoreError> {
    let output = &opts.output;
    match fs::metadata(output) {
        Ok(m) if m.is_dir() => {
            return Err(RestoreError::Io {
                path: output.clone(),
                op: "output path",
                source: io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
            })
        }
        Ok(m) if m.len() > 0 && !opts.force => {
            return Err(RestoreError::OutputExists {
                path: output.clone(),
            })
        }
        _ => {}
    }
    if !opts.force {
        // A leftover WAL or journal would be applied to the restored database by SQLite.
        for suffix in ["-wal", "-journal"] {
            let p = sidecar(output, suffix);
            if fs::metadata(&p).is_ok_and(|m| m.len() > 0) {
                return Err(RestoreError::OutputExists { path: p });
            }
        }
    }
    Ok(())
}

/// State carried from one planned file to the next.
struct Applied {
    last: Option<Header>,
    last_key: String,
}

/// Checks a file's header against its name and the previous file (spec §4.3).
fn check_header(key: &str, f: &LtxFileInfo, h: &Header, st: &Applied) -> Result<(), RestoreError> {
    let invalid = |reason: String| RestoreError::Invalid {
        key: key.to_string(),
        reason,
    };
    if h.min_txid != f.min_txid || h.max_txid != f.max_txid {
        return Err(invalid(format!(
            "header TXID range {}-{} does not match the file name",
            format_txid(h.min_txid),
            format_txid(h.max_txid)
        )));
    }
    match &st.last {
        None if h.min_txid != 1 => Err(invalid(
            "cannot decode non-snapshot LTX file to SQLite database: the first file must start \
             at TXID 0000000000000001"
                .to_string(),
        )),
        None => Ok(()),
        Some(prev) => ltx::check_link(prev, h).map_err(|e| {
            invalid(match e {
                LinkError::PageSize { prev, next } => {
                    format!("page size {next} differs from the previous files' {prev}")
                }
                LinkError::Txids { prev, next } => format!(
                    "non-contiguous transaction ids in input files: ({},{}) -> ({},{})",
                    format_txid(prev.0),
                    format_txid(prev.1),
                    format_txid(next.0),
                    format_txid(next.1)
                ),
            })
        }),
    }
}

/// Decodes one planned file into the writer.
fn apply_file<'f>(
    client: &dyn ReplicaClient,
    f: &LtxFileInfo,
    src: Source,
    tmp: &'f File,
    tmp_path: &Path,
    writer: &mut Option<PageWriter<'f>>,
    st: &mut Applied,
) -> Result<(), RestoreError> {
    let key = client.key(f.level, f.min_txid, f.max_txid);
    let decode = |source: LtxError| RestoreError::Decode {
        key: key.clone(),
        source,
    };
    let mut dec = Decoder::new(BufReader::with_capacity(256 * 1024, src.reader)).map_err(decode)?;
    let h = *dec.header();
    check_header(&key, f, &h, st)?;
    let w = writer.get_or_insert_with(|| PageWriter::new(tmp, h.page_size));
    let lock = ltx::lock_pgno(h.page_size);
    let mut page = vec![0u8; h.page_size as usize];
    let mut pages = 0usize;
    while let Some(pgno) = dec.next_page(&mut page).map_err(decode)? {
        if pgno == 0 || pgno > h.commit || pgno == lock {
            return Err(RestoreError::Invalid {
                key: key.clone(),
                reason: format!("page {pgno} is outside the database (commit {})", h.commit),
            });
        }
        w.put(pgno, &page)
            .map_err(RestoreError::io(tmp_path, "write"))?;
        pages += 1;
    }
    dec.finish().map_err(decode)?;
    tracing::debug!(key = %key, pages, commit = h.commit, "applied ltx file");
    st.last = Some(h);
    st.last_key = key;
    Ok(())
}

fn apply_plan(
    client: &dyn ReplicaClient,
    planned: &[LtxFileInfo],
    opts: &RestoreOptions,
    spool: bool,
    progress: &dyn RestoreProgress,
) -> Result<RestoreOutcome, RestoreError> {
    let output = &opts.output;
    let name = output.file_name().ok_or_else(|| RestoreError::Io {
        path: output.clone(),
        op: "output path",
        source: io::Error::new(io::ErrorKind::InvalidInput, "has no file name"),
    })?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp_path = dir.join(format!(
        "{}.tmp-{:016x}",
        name.to_string_lossy(),
        fastrand::u64(..)
    ));
    let tmp = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(RestoreError::io(&tmp_path, "create temp file"))?;
    let mut guard = TempFile(Some(tmp_path.clone()));

    let mut st = Applied {
        last: None,
        last_key: String::new(),
    };
    let mut writer: Option<PageWriter<'_>> = None;
    let mut step = |idx: usize, src: Source| -> Result<(), RestoreError> {
        apply_file(
            client,
            &planned[idx],
            src,
            &tmp,
            &tmp_path,
            &mut writer,
            &mut st,
        )?;
        progress.file_done(planned[idx].size);
        Ok(())
    };
    if spool {
        fetch::with_prefetch(client, planned, opts.parallelism, &dir, &mut step)?;
    } else {
        for (idx, f) in planned.iter().enumerate() {
            step(idx, fetch::open_direct(client, f)?)?;
        }
    }
    let (Some(last), Some(mut w)) = (st.last, writer) else {
        return Err(RestoreError::Plan(PlanError::NoFiles));
    };
    w.flush().map_err(RestoreError::io(&tmp_path, "write"))?;
    let page_size = last.page_size;
    let commit = last.commit;
    let lock = ltx::lock_pgno(page_size);
    if let Some(pgno) = w.written.first_missing(commit, lock) {
        return Err(RestoreError::MissingPage {
            pgno,
            commit,
            key: st.last_key,
        });
    }
    check_database_header(&tmp, page_size, commit).map_err(|source| {
        RestoreError::NotADatabase {
            key: st.last_key.clone(),
            source,
        }
    })?;
    tmp.set_len(u64::from(commit) * u64::from(page_size))
        .map_err(RestoreError::io(&tmp_path, "truncate"))?;
    if commit >= lock {
        let zeros = vec![0u8; page_size as usize];
        tmp.write_all_at(&zeros, u64::from(lock - 1) * u64::from(page_size))
            .map_err(RestoreError::io(&tmp_path, "zero lock page"))?;
    }
    tmp.sync_all()
        .map_err(RestoreError::io(&tmp_path, "fsync"))?;
    drop(tmp);

    if opts.force {
        for suffix in ["-wal", "-shm", "-journal"] {
            let p = sidecar(output, suffix);
            match fs::remove_file(&p) {
                Ok(()) => tracing::info!(path = %p.display(), "removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RestoreError::Io {
                        path: p,
                        op: "remove",
                        source: e,
                    })
                }
            }
        }
    }
    fs::rename(&tmp_path, output)
        .map_err(RestoreError::io(output, "rename temp file into place"))?;
    guard.0 = None;
    crate::replica::file::sync_dir(&dir).map_err(RestoreError::io(&dir, "fsync directory"))?;
    Ok(RestoreOutcome::Restored {
        txid: last.max_txid,
        page_size,
        page_count: commit,
        files: planned.len(),
    })
}

/// SQLite's file header magic (page 1, offset 0).
pub(crate) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// For tests that build pages by hand: `page` (page 1 of a database with `page_size`) with
/// the start of a SQLite header, which restore requires.
#[cfg(test)]
pub(crate) fn stamp_header(page: &mut [u8], page_size: u32) {
    page[..16].copy_from_slice(SQLITE_MAGIC);
    let field = if page_size == 65536 {
        1
    } else {
        page_size as u16
    };
    page[16..18].copy_from_slice(&field.to_be_bytes());
}

/// Refuses a restored image that SQLite would not open: no pages, a page 1 that is not a
/// database header, or a header whose page size differs from the LTX files'.
fn check_database_header(tmp: &File, page_size: u32, commit: u32) -> Result<(), NotADatabase> {
    if commit == 0 {
        return Err(NotADatabase::NoPages);
    }
    let mut head = [0u8; 18];
    tmp.read_exact_at(&mut head, 0)
        .map_err(NotADatabase::ReadBack)?;
    if &head[..16] != SQLITE_MAGIC {
        return Err(NotADatabase::NoHeader);
    }
    let claimed = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u32::from(n),
    };
    if claimed != page_size {
        return Err(NotADatabase::PageSize { claimed, page_size });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

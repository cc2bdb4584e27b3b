//! One database followed by the sidecar (`docs/sidecar.md`): two connections of this process
//! through the `litestream` VFS, one of which always holds a read transaction, so that no
//! other process can restart the WAL over frames the sidecar has not copied yet.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capture::WalIndexMark;
use crate::database::Database;
use crate::ffi::engine_host;
use crate::ffi::sqlite_lib::{LibConn, LibSqlError};
use crate::ffi::vfs_shim::VFS_NAME;

/// Why a database cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{path}: {source}")]
    Sql { path: PathBuf, source: LibSqlError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the configuration does not replicate this database (is its path the one SQLite opens, after symlinks?)")]
    NotManaged(PathBuf),
}

/// Bytes of the `-shm` file read for one look at the WAL: both copies of the 48-byte wal-index
/// header, and `nBackfill`, the first field of the checkpoint information after them (wal.c).
const SHM_HEAD: usize = 100;
/// Offset of `nBackfill` in the `-shm` file.
const N_BACKFILL: usize = 96;
/// Reads of the header before giving up on copies that differ: they differ only while a
/// commit writes them (a few instructions), and the caller retries at its next wake anyway.
const HEADER_READS: usize = 3;

/// WAL length (frames) from which the sidecar checkpoints the WAL itself and lets the next
/// writer restart it, even if the application never checkpoints: SQLite's own default
/// `wal_autocheckpoint` (about 4 MB of 4 KiB pages). The application's checkpoints cannot
/// complete on their own while the sidecar holds a read mark (see `docs/sidecar.md`).
const CHECKPOINT_FRAMES: u32 = 1000;

/// What one look at the database found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Another process is in a transaction or a checkpoint: look again shortly.
    Busy,
    /// Everything committed is copied (or this process defers to another stager).
    Done,
}

/// SQLite's shared view of the WAL: the committed mark and how much of it is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WalView {
    mark: WalIndexMark,
    backfilled: u32,
}

pub struct Followed {
    pub db: Arc<Database>,
    conns: [LibConn; 2],
    /// The connection holding the read transaction.
    reading: usize,
    shm_path: PathBuf,
    /// Kept open while the connections are: closing a descriptor of the `-shm` would drop
    /// this process's SQLite locks on it.
    /// (Shared, never duplicated: `dup` + `close` would drop the locks too.)
    shm: Option<Arc<File>>,
    copied: Option<WalIndexMark>,
    deferring: bool,
}

fn begin_read(conn: &LibConn) -> Result<(), LibSqlError> {
    // A deferred transaction starts reading at its first statement that reads the database.
    conn.exec("BEGIN; SELECT 1 FROM sqlite_master LIMIT 1;")
        .map(drop)
}

fn end_read(conn: &LibConn) -> Result<(), LibSqlError> {
    conn.exec("COMMIT;").map(drop)
}

impl Followed {
    /// Opens `path` twice through the engine (this process becomes its stager unless another
    /// process holds the lock) and starts holding a read transaction.
    pub fn open(path: &Path) -> Result<Followed, FollowError> {
        let sql = |source| FollowError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conns = [
            LibConn::open_vfs(path, VFS_NAME).map_err(sql)?,
            LibConn::open_vfs(path, VFS_NAME).map_err(sql)?,
        ];
        let canonical = path.canonicalize().map_err(|source| FollowError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let db = crate::registry::all()
            .into_iter()
            .find(|d| d.path.canonicalize().is_ok_and(|p| p == canonical))
            .ok_or_else(|| FollowError::NotManaged(path.to_path_buf()))?;
        begin_read(&conns[0]).map_err(sql)?;
        let mut shm_path = db.path.clone().into_os_string();
        shm_path.push("-shm");
        Ok(Followed {
            db,
            conns,
            reading: 0,
            shm_path: PathBuf::from(shm_path),
            shm: None,
            copied: None,
            deferring: false,
        })
    }

    fn io(&self, source: std::io::Error) -> FollowError {
        FollowError::Io {
            path: self.shm_path.clone(),
            source,
        }
    }

    /// The wal-index header as SQLite's readers take it: both copies equal.
    fn view(&self, shm: &File) -> Result<Option<WalView>, FollowError> {
        let mut buf = [0u8; SHM_HEAD];
        for _ in 0..HEADER_READS {
            match shm.read_exact_at(&mut buf, 0) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(self.io(e)),
            }
            if buf[..48] != buf[48..96] {
                continue;
            }
            let hdr: &[u8; 48] = buf[..48].try_into().expect("48 bytes");
            let Some(mark) = WalIndexMark::parse(hdr) else {
                return Ok(None);
            };
            let backfilled =
                u32::from_ne_bytes(buf[N_BACKFILL..N_BACKFILL + 4].try_into().expect("4 bytes"));
            return Ok(Some(WalView { mark, backfilled }));
        }
        Ok(None)
    }

    /// Copies what other processes committed and moves the read transaction forward.
    pub fn step(&mut self) -> Result<Step, FollowError> {
        if self.shm.is_none() {
            match File::open(&self.shm_path) {
                Ok(f) => self.shm = Some(Arc::new(f)),
                // Not in WAL mode (yet): nothing to follow.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Step::Done),
                Err(e) => return Err(self.io(e)),
            }
        }
        let shm = Arc::clone(self.shm.as_ref().expect("opened above"));
        let shm = shm.as_ref();
        // A transaction under way: copy what is committed now, and look again soon, for the
        // commit that ends it updates the header without touching any file inotify watches.
        let busy = engine_host::write_or_checkpoint_elsewhere(shm).map_err(|e| self.io(e))?;
        let Some(view) = self.view(shm)? else {
            return Ok(Step::Busy);
        };
        // The read transaction held since the last step keeps these frames in the WAL.
        if self.copied != Some(view.mark) {
            self.db.capture_foreign(view.mark, false);
        }
        // The next read transaction starts before the current one ends: there is no moment
        // without one.
        let next = 1 - self.reading;
        let sql = |source| FollowError::Sql {
            path: self.db.path.clone(),
            source,
        };
        begin_read(&self.conns[next]).map_err(sql)?;
        // Both transactions are held: no checkpoint can change the database file now (the old
        // one's mark is at or below `view`). If everything copied is also checkpointed, the
        // next WAL restart may happen as soon as the old transaction ends: close the generation
        // first, so that the next one continues the chain.
        let now = self
            .view(shm)?
            .filter(|v| v.mark == view.mark && v.mark.max_frame > 0);
        let complete = |v: &WalView| v.backfilled == v.mark.max_frame;
        if now.as_ref().is_some_and(complete) {
            self.db.capture_foreign(view.mark, true);
        }
        end_read(&self.conns[self.reading]).map_err(sql)?;
        self.reading = next;
        self.copied = Some(view.mark);
        if let Some(now) = now
            .filter(|v| !complete(v) && (v.backfilled > 0 || v.mark.max_frame >= CHECKPOINT_FRAMES))
        {
            self.checkpoint(shm, now)?;
        }
        self.note_stager();
        Ok(if busy { Step::Busy } else { Step::Done })
    }

    /// Someone checkpoints this WAL generation (or it grew long), but no checkpoint can
    /// complete past the sidecar's read mark, so SQLite would never restart the WAL: with
    /// everything up to `now` copied and the read transaction at `now`, checkpoint the rest,
    /// close the generation, and move the read transaction to the end of the checkpointed WAL
    /// (where SQLite reads the database file alone and lets the next writer restart the WAL).
    fn checkpoint(&mut self, shm: &File, now: WalView) -> Result<(), FollowError> {
        let idle = 1 - self.reading;
        let sql = |source| FollowError::Sql {
            path: self.db.path.clone(),
            source,
        };
        // PASSIVE: never waits for, nor blocks, the application's connections.
        self.conns[idle]
            .exec("PRAGMA wal_checkpoint(PASSIVE);")
            .map_err(sql)?;
        let after = self.view(shm)?;
        if after
            != Some(WalView {
                mark: now.mark,
                backfilled: now.mark.max_frame,
            })
        {
            return Ok(()); // a commit came in between: the next step looks again
        }
        // Our read mark is `now`: nothing past it can be checkpointed, so the database file
        // stays as it is until the next restart.
        self.db.capture_foreign(now.mark, true);
        begin_read(&self.conns[idle]).map_err(sql)?;
        end_read(&self.conns[self.reading]).map_err(sql)?;
        self.reading = idle;
        Ok(())
    }

    /// Logs when another process (an application with the extension loaded) takes over
    /// shipping this database, or gives it back.
    fn note_stager(&mut self) {
        let deferring = !self.db.is_stager();
        if deferring != self.deferring {
            self.deferring = deferring;
            if deferring {
                tracing::info!(db = %self.db.path.display(), "another process with the extension loaded stages and ships this database; the sidecar defers to it");
            } else {
                tracing::info!(db = %self.db.path.display(), "the sidecar stages and ships this database");
            }
        }
    }

    /// Ends the read transaction and closes the connections (then the `-shm` descriptor).
    pub fn close(self) {
        let _ = end_read(&self.conns[self.reading]);
        let Followed { conns, shm, .. } = self;
        drop(conns);
        drop(shm);
    }
}

//! Writing a sealed L0 file from staged pages, and reading back its timestamp.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;

use super::{segment_scan, SyncError};
use crate::database::Database;
use crate::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use crate::staging::{self, CommitRecord, StagingError};
use crate::TxId;

/// An L0 file just encoded into `<meta>/ltx/0/<txid>-<txid>.ltx.tmp`, not yet fsynced: what
/// happens next decides whether it is ever made durable locally (see [`Encoded::seal`]).
pub(super) struct Encoded {
    pub tmp: PathBuf,
    pub final_path: PathBuf,
    pub bytes: u64,
    file: File,
}

impl Encoded {
    /// Makes the file a sealed local L0 file: fsync, rename to its final name, fsync the
    /// directory. Only then may the state record it as sealed.
    pub(super) fn seal(self, db: &Database) -> Result<(), SyncError> {
        self.file.sync_all().map_err(|e| StagingError::Io {
            path: self.tmp.clone(),
            source: e,
        })?;
        drop(self.file);
        fs::rename(&self.tmp, &self.final_path).map_err(|e| StagingError::Io {
            path: self.final_path.clone(),
            source: e,
        })?;
        staging::sync_dir(&db.meta.l0_dir())?;
        Ok(())
    }
}

/// Encodes the L0 file of `txid` from the staged `pages` into a temporary file (no fsync: see
/// [`Encoded`]).
pub(super) fn encode_l0(
    db: &Database,
    txid: TxId,
    c: &CommitRecord,
    wal_start: u64,
    complete_from: u32,
    pages: &segment_scan::PageMap,
    files: &[File],
) -> Result<Encoded, SyncError> {
    let final_path = db.meta.l0_path(txid, txid);
    let tmp = final_path.with_extension("ltx.tmp");
    let ltx_err = |source| SyncError::Ltx {
        path: tmp.display().to_string(),
        source,
    };
    // The WAL fields name the commit the file ends with: after a crash between storing the
    // file in the replica and saving the state, `adopt` finds that commit among the staged
    // segments by them (and the commit's size and timestamp).
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: c.page_size,
        commit: c.db_size,
        min_txid: txid,
        max_txid: txid,
        timestamp_ms: c.timestamp_ms,
        wal_offset: wal_start as i64,
        wal_size: c.wal.offset.saturating_sub(wal_start) as i64,
        wal_salt1: c.wal.salt1,
        wal_salt2: c.wal.salt2,
        ..Header::default()
    };
    let out = staging::create_file(&tmp, |p| File::create(p))?;
    let mut enc =
        Encoder::new(BufWriter::with_capacity(256 * 1024, out), &header).map_err(ltx_err)?;
    enc.require_complete_from(complete_from);
    let mut buf = vec![0u8; c.page_size as usize];
    for (pgno, segment, offset) in pages.iter_upto(c.db_size) {
        segment_scan::read_page(files, segment, offset, &mut buf).map_err(|e| {
            StagingError::Io {
                path: db.meta.staging_dir(),
                source: e,
            }
        })?;
        enc.write_page(pgno, &buf).map_err(ltx_err)?;
    }
    let (w, _) = enc.finish().map_err(ltx_err)?;
    let file = w.into_inner().map_err(|e| StagingError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    let bytes = file.metadata().map_or(0, |m| m.len());
    Ok(Encoded {
        tmp,
        final_path,
        bytes,
        file,
    })
}

/// The timestamp in the header of the sealed L0 file at `path`.
pub(super) fn read_timestamp(path: &std::path::Path) -> Result<i64, SyncError> {
    let mut buf = [0u8; crate::ltx::HEADER_SIZE];
    let f = File::open(path).map_err(|e| StagingError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    staging::read_page_at(&f, 0, &mut buf).map_err(|e| StagingError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let h = Header::decode(&buf).map_err(|source| SyncError::Ltx {
        path: path.display().to_string(),
        source,
    })?;
    Ok(h.timestamp_ms)
}

//! Writing a sealed L0 file from staged pages, and reading back its timestamp.

use std::fs::{self, File};
use std::io::BufWriter;

use super::{segment_scan, SyncError};
use crate::database::Database;
use crate::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use crate::staging::{self, CommitRecord, StagingError};
use crate::TxId;

/// Where [`write_l0`] put the file, and its size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sealed {
    /// In the meta directory's `l0/`, to be uploaded.
    Local(u64),
    /// Straight into a local replica (`ReplicaClient::begin_direct`): already visible there,
    /// after one fsync, with no local copy.
    Replica(u64),
}

/// Writes the L0 file of `txid`: straight into the replica when it is local, else into the
/// meta directory (through a temporary file, fsynced, renamed) for the upload.
pub(super) fn write_l0(
    db: &Database,
    txid: TxId,
    c: &CommitRecord,
    wal_start: u64,
    complete_from: u32,
    pages: &segment_scan::PageMap,
    files: &[File],
) -> Result<Sealed, SyncError> {
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
    let content = L0Content {
        header: &header,
        page_size: c.page_size,
        complete_from,
        pages,
        files,
    };
    if let Some(direct) = db.client.begin_direct(0, txid, txid) {
        let mut direct = direct?;
        let tmp = direct.temp_path().to_path_buf();
        let bytes = content.encode(db, direct.file(), &tmp)?;
        direct.publish(c.timestamp_ms)?;
        return Ok(Sealed::Replica(bytes));
    }
    let final_path = db.meta.l0_path(txid, txid);
    let tmp = final_path.with_extension("ltx.tmp");
    let io_err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| StagingError::Io { path, source }
    };
    let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
    let bytes = content.encode(db, &mut out, &tmp)?;
    out.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
    staging::sync_dir(&db.meta.l0_dir())?;
    Ok(Sealed::Local(bytes))
}

/// What an L0 file holds: its header and the newest staged version of each page.
struct L0Content<'a> {
    header: &'a Header,
    page_size: u32,
    complete_from: u32,
    pages: &'a segment_scan::PageMap,
    files: &'a [File],
}

/// Buffer between the encoder and the file: few large writes, a small fixed memory.
const ENCODE_BUFFER_BYTES: usize = 256 * 1024;

impl L0Content<'_> {
    /// Encodes the file into `out` (`path` names it in errors); not fsynced. Returns its
    /// size in bytes.
    fn encode(
        &self,
        db: &Database,
        out: &mut File,
        path: &std::path::Path,
    ) -> Result<u64, SyncError> {
        let ltx_err = |source| SyncError::Ltx {
            path: path.display().to_string(),
            source,
        };
        let mut enc = Encoder::new(
            BufWriter::with_capacity(ENCODE_BUFFER_BYTES, out),
            self.header,
        )
        .map_err(ltx_err)?;
        enc.require_complete_from(self.complete_from);
        let mut buf = vec![0u8; self.page_size as usize];
        for (pgno, segment, offset) in self.pages.iter_upto(self.header.commit) {
            segment_scan::read_page(self.files, segment, offset, &mut buf).map_err(|e| {
                StagingError::Io {
                    path: db.meta.staging_dir(),
                    source: e,
                }
            })?;
            enc.write_page(pgno, &buf).map_err(ltx_err)?;
        }
        let (w, _) = enc.finish().map_err(ltx_err)?;
        let out = w.into_inner().map_err(|e| StagingError::Io {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        let bytes = out.metadata().map_or(0, |m| m.len());
        Ok(bytes)
    }
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

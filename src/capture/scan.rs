//! Reading WAL frames for the capture: the forward scan that validates salts and the checksum
//! chain as SQLite's recovery does, and the checks of a recorded position against the file.

use super::{read_full_or_zero, CaptureError, ReadAt, SCAN_CHUNK_BYTES};
use crate::staging::WalPos;
use crate::wal::{Checksum, FrameHeader, WalHeader, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

/// True unless the frame that ends at `pos` shows that the WAL is no longer the one `pos` was
/// taken from: same salts (SQLite's test harness resets its PRNG, and a copied WAL keeps its
/// salts) but another frame there. A frame still carrying zero salts cannot tell.
pub(super) fn frame_before_matches(
    header: &WalHeader,
    wal: &dyn ReadAt,
    pos: &WalPos,
) -> Result<bool, CaptureError> {
    let Some(at) = pos.offset.checked_sub(header.frame_size()) else {
        return Ok(true);
    };
    if at < WAL_HEADER_SIZE {
        return Ok(true);
    }
    let mut fh = [0u8; FRAME_HEADER_SIZE as usize];
    read_full_or_zero(wal, &mut fh, at)
        .map_err(|source| CaptureError::WalRead { offset: at, source })?;
    let f = FrameHeader::parse(&fh);
    Ok(match frame_salts(header, &f) {
        Salts::Zero => true,
        Salts::Ours => f.checksum == pos.checksum,
        Salts::Foreign => false,
    })
}

/// Whose salts a frame header carries.
enum Salts {
    /// This generation's.
    Ours,
    /// Zero: SQLite defers the frame's salts and checksum.
    Zero,
    /// Another generation's: the frame is left over from an older one.
    Foreign,
}

fn frame_salts(header: &WalHeader, fh: &FrameHeader) -> Salts {
    match (fh.salt1, fh.salt2) {
        (0, 0) => Salts::Zero,
        s if s == (header.salt1, header.salt2) => Salts::Ours,
        _ => Salts::Foreign,
    }
}

/// True when the frame that ends at `offset` carries this generation's salts and `checksum`
/// as its own: the running checksum there is SQLite's.
fn chain_known_at(
    header: &WalHeader,
    wal: &dyn ReadAt,
    offset: u64,
    checksum: Checksum,
) -> Result<bool, CaptureError> {
    let at = offset - header.frame_size();
    let mut fh = [0u8; FRAME_HEADER_SIZE as usize];
    read_full_or_zero(wal, &mut fh, at)
        .map_err(|source| CaptureError::WalRead { offset: at, source })?;
    let fh = FrameHeader::parse(&fh);
    Ok(matches!(frame_salts(header, &fh), Salts::Ours) && fh.checksum == checksum)
}

pub(super) fn pos_at(header: &WalHeader, offset: u64, checksum: Checksum) -> WalPos {
    WalPos {
        salt1: header.salt1,
        salt2: header.salt2,
        offset,
        checksum,
        big_endian: header.big_endian,
    }
}

/// Calls `f(frame header, page, end offset of the frame, running checksum)` for each valid
/// frame from `start`, stopping at the first frame that fails the salt or checksum test.
///
/// With `limit` (the end of the frames the wal-index says are committed), frames before it are
/// taken as SQLite itself takes them: a committed frame may still carry zero salts and
/// checksums (SQLite defers rewriting them, e.g. after `ROLLBACK TO` a spilled savepoint), so
/// only the checksum chain *past* the limit decides, and the scan ends at the limit. Even then
/// a frame is not taken when the file does not hold its committed content yet (a VFS stacked
/// above ours, like SQLite's crash-test VFS, may still buffer part of it): another
/// generation's salts, or this generation's salts with a checksum that does not continue a
/// chain known to be SQLite's own.
/// `buf`: reused read buffer (at most [`SCAN_CHUNK_BYTES`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_frames(
    header: &WalHeader,
    wal: &dyn ReadAt,
    wal_size: u64,
    limit: Option<u64>,
    start: u64,
    checksum: Checksum,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&FrameHeader, &[u8], u64, Checksum) -> Result<(), CaptureError>,
) -> Result<(), CaptureError> {
    let wal_size = limit.unwrap_or(wal_size);
    let trusted = limit.is_some();
    let frame_size = header.frame_size() as usize;
    let frames_per_chunk = (SCAN_CHUNK_BYTES / frame_size).max(1);
    let mut off = start;
    let mut ck = checksum;
    // Whether `ck` is SQLite's running checksum (false after frames with deferred checksums).
    let mut ck_is_sqlites = start < WAL_HEADER_SIZE + frame_size as u64
        || chain_known_at(header, wal, start, checksum)?;
    while off + frame_size as u64 <= wal_size {
        let n_frames = (((wal_size - off) / frame_size as u64) as usize).min(frames_per_chunk);
        buf.resize(n_frames * frame_size, 0);
        read_full_or_zero(wal, buf, off).map_err(|source| CaptureError::WalRead {
            offset: off,
            source,
        })?;
        for frame in buf.chunks_exact(frame_size) {
            let fh_bytes: &[u8; 24] = frame[..24].try_into().expect("24-byte frame header");
            let page = &frame[24..];
            let verified = header.verify_frame(ck, fh_bytes, page);
            let fh = FrameHeader::parse(fh_bytes);
            let next = match (verified, trusted, frame_salts(header, &fh)) {
                (Some(c), _, _) => {
                    ck_is_sqlites = true;
                    Some(c)
                }
                (None, false, _) | (None, true, Salts::Foreign) => None,
                // Committed per the wal-index with its checksum deferred.
                (None, true, Salts::Zero) => {
                    ck_is_sqlites = false;
                    Some(ck)
                }
                // Our chain broke on deferred frames: continue from SQLite's own checksum.
                (None, true, Salts::Ours) if !ck_is_sqlites => {
                    ck_is_sqlites = true;
                    Some(fh.checksum)
                }
                // The chain is SQLite's and the frame does not continue it: its page was
                // rewritten in place after its checksum was computed (SQLite commits such
                // frames after `ROLLBACK TO` a savepoint whose pages were spilled), or it is
                // torn or unwritten. Only the first is taken (see `rewritten_in_place`).
                (None, true, Salts::Ours)
                    if rewritten_in_place(header, wal, off, wal_size, &fh)? =>
                {
                    Some(fh.checksum)
                }
                (None, true, Salts::Ours) => None,
            };
            let Some(next) = next else {
                tracing::debug!(
                    offset = off,
                    wal_size,
                    pgno = fh.pgno,
                    commit = fh.commit_size,
                    salt1 = fh.salt1,
                    hdr_salt1 = header.salt1,
                    "scan stopped at an invalid frame"
                );
                return Ok(());
            };
            ck = next;
            off += frame_size as u64;
            f(&fh, page, off, ck)?;
        }
    }
    Ok(())
}

/// True when the frame at `off` (of this generation, its checksum not matching its content)
/// is a committed frame whose page SQLite rewrote in place after computing the checksum: the
/// frames after it, up to the committed end `limit`, all carry this generation's salts, and the
/// last of them is a commit frame ending exactly at `limit` whose checksum continues the chain
/// of stored checksums. A frame whose content has not reached the file yet (torn, or stale
/// behind a buffering VFS) has no such chain behind it: its successors are unwritten too, and
/// the committed end is a commit frame only SQLite's buffered write holds.
fn rewritten_in_place(
    header: &WalHeader,
    wal: &dyn ReadAt,
    off: u64,
    limit: u64,
    fh: &FrameHeader,
) -> Result<bool, CaptureError> {
    let frame_size = header.frame_size();
    let last = limit.saturating_sub(frame_size);
    if fh.commit_size != 0 || last <= off || !(limit - WAL_HEADER_SIZE).is_multiple_of(frame_size) {
        return Ok(false);
    }
    let mut prev = fh.checksum;
    let mut at = off + frame_size;
    let mut h = [0u8; FRAME_HEADER_SIZE as usize];
    while at < last {
        read_full_or_zero(wal, &mut h, at)
            .map_err(|source| CaptureError::WalRead { offset: at, source })?;
        let f = FrameHeader::parse(&h);
        if !matches!(frame_salts(header, &f), Salts::Ours) {
            return Ok(false);
        }
        prev = f.checksum;
        at += frame_size;
    }
    let mut frame = vec![0u8; frame_size as usize];
    read_full_or_zero(wal, &mut frame, last).map_err(|source| CaptureError::WalRead {
        offset: last,
        source,
    })?;
    let h: &[u8; 24] = frame[..24].try_into().expect("24-byte frame header");
    let f = FrameHeader::parse(h);
    Ok(f.commit_size != 0 && header.verify_frame(prev, h, &frame[24..]).is_some())
}

//! Replica files the saved state does not know yet.
//!
//! `seal` stores a new L0 file in the replica before it saves the state that records it (one
//! durable step before the file is visible, see `docs/staging.md`). A crash in between leaves
//! the replica at the state's TXID + 1 while the segments the file was sealed from are still
//! staged (they are deleted only after the state is saved). The file's header names the
//! commit it ends with (WAL salts and end offset, database size, commit time), and so does the
//! commit record that ended those segments: finding it tells exactly which staged segments the
//! file covered, so the state moves on to it instead of restarting the chain with a full image.

use std::io::Read;

use super::{segment_scan, SyncError, SyncState};
use crate::database::Database;
use crate::ltx::{Header, HEADER_SIZE};
use crate::replica::LtxFileInfo;
use crate::staging::CommitRecord;

/// Moves `st` forward over every L0 file of the replica that continues the state's TXID and
/// was sealed from segments still staged here. Returns the segments now covered (to be deleted
/// once the state is saved).
pub(super) fn adopt_published(
    db: &Database,
    st: &mut SyncState,
    replica_files: &[LtxFileInfo],
) -> Result<Vec<u64>, SyncError> {
    let mut covered = Vec::new();
    // The acknowledgement of the last sealed file reaches `state.json` only with the next save
    // (see `upload_pending`): a replica holding it acknowledged it.
    if replica_files.iter().any(|f| f.max_txid >= st.state.txid) {
        st.state.replicated_txid = st.state.replicated_txid.max(st.state.txid);
    }
    // Direct publishing only happens after the first file and while nothing sealed waits.
    while st.state.txid > 0 && st.state.replicated_txid == st.state.txid {
        let next = st.state.txid + 1;
        let Some(file) = replica_files
            .iter()
            .find(|f| f.level == 0 && f.min_txid == next && f.max_txid == next)
        else {
            break;
        };
        let header = read_header(db, file)?;
        let mut found = None;
        for seq in db.meta.list_segments()? {
            if seq <= st.state.sealed_segment {
                continue;
            }
            let (last, closed) = segment_scan::last_commit(&db.meta.segment_path(seq))?;
            covered.push(seq);
            if last.is_some_and(|c| names_commit(&header, &c)) {
                found = last.map(|c| (seq, c, closed));
                break;
            }
        }
        let Some((seq, c, closed)) = found else {
            covered.retain(|&s| s <= st.state.sealed_segment);
            break;
        };
        let s = &mut st.state;
        s.txid = next;
        s.replicated_txid = next;
        s.sealed_segment = seq;
        s.wal = Some(c.wal);
        s.page_size = c.page_size;
        s.commit = c.db_size;
        s.closed = closed;
        db.progress.sealed(seq, Some(next), file.size);
        db.progress.acked(next);
        tracing::info!(db = %db.path.display(), replica = %db.client.describe(), txid = %crate::format_txid(next), "the replica stored this file just before the last stop; its staged segments are done");
    }
    Ok(covered)
}

/// Whether the L0 header `h` describes the file sealed up to commit `c`.
fn names_commit(h: &Header, c: &CommitRecord) -> bool {
    h.wal_salt1 == c.wal.salt1
        && h.wal_salt2 == c.wal.salt2
        && u64::try_from(h.wal_offset.saturating_add(h.wal_size)) == Ok(c.wal.offset)
        && h.commit == c.db_size
        && h.page_size == c.page_size
        && h.timestamp_ms == c.timestamp_ms
}

fn read_header(db: &Database, f: &LtxFileInfo) -> Result<Header, SyncError> {
    let key = db.client.key(f.level, f.min_txid, f.max_txid);
    let mut buf = [0u8; HEADER_SIZE];
    let mut r = db.client.open(f.level, f.min_txid, f.max_txid)?;
    r.read_exact(&mut buf)
        .map_err(|e| crate::replica::ReplicaError::from_io(key.clone(), e))?;
    Header::decode(&buf).map_err(|source| SyncError::Ltx { path: key, source })
}

#[cfg(test)]
mod tests {
    use super::names_commit;
    use crate::ltx::Header;
    use crate::staging::{CommitRecord, WalPos};

    #[test]
    fn a_header_names_the_commit_it_was_sealed_up_to_and_no_other() {
        let c = CommitRecord {
            db_size: 7,
            page_size: 4096,
            timestamp_ms: 1_700_000_000_123,
            full: false,
            wal: WalPos {
                salt1: 1,
                salt2: 2,
                offset: 32 + 3 * 4120,
                ..WalPos::default()
            },
        };
        let h = Header {
            page_size: 4096,
            commit: 7,
            timestamp_ms: c.timestamp_ms,
            wal_offset: 32 + 4120,
            wal_size: 2 * 4120,
            wal_salt1: 1,
            wal_salt2: 2,
            ..Header::default()
        };
        assert!(names_commit(&h, &c));
        for other in [
            Header { wal_salt2: 3, ..h },
            Header {
                wal_size: 4120,
                ..h
            },
            Header { commit: 8, ..h },
            Header {
                timestamp_ms: 1,
                ..h
            },
            Header {
                wal_offset: -1,
                wal_size: 0,
                ..h
            },
        ] {
            assert!(!names_commit(&other, &c), "{other:?}");
        }
    }
}

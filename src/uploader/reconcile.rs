//! Start-up (and takeover) check of the recorded position against the replica.

use std::fs;

use super::{SyncError, SyncState};
use crate::database::Database;
use crate::l0_cache::L0Cache;
use crate::TxId;

/// Compares the recorded position with the replica (one LIST, off the commit path) once per
/// process and after each lease takeover, and restarts the chain with a full image when they
/// disagree.
pub(super) fn reconcile(db: &Database, st: &mut SyncState) -> Result<(), SyncError> {
    let url = db.client.describe();
    // Copies of earlier uploads may not match the replica any more (see `l0_cache`).
    L0Cache::new(&db.meta).clear();
    let replica_files = crate::replica::continuable_files(db.client.as_ref())?;
    let replica_max = replica_files.iter().map(|f| f.max_txid).max().unwrap_or(0);
    let pending = db.meta.list_l0()?;
    let adopted = if st.state.replica == url {
        super::adopt::adopt_published(db, st, &replica_files)?
    } else {
        Vec::new()
    };
    let s = &mut st.state;
    if s.replica == url && replica_max > s.replicated_txid {
        // Uploaded before a crash but not recorded (the acknowledgement is persisted with the
        // next seal, see `upload_pending`): the sealed files up to it are done.
        if replica_max <= s.txid || pending.iter().any(|&(_, max)| max == replica_max) {
            s.replicated_txid = replica_max;
            db.progress.acked(replica_max);
        }
    }
    let restart = if s.replica != url && s.txid > 0 {
        Some(format!("the replica changed from {} to {url}", s.replica))
    } else if s.replica == url && replica_max != s.replicated_txid {
        Some(format!(
            "replica is at TXID {} but this database recorded {}",
            crate::format_txid(replica_max),
            crate::format_txid(s.replicated_txid)
        ))
    } else if s.txid == 0 && replica_max > 0 {
        Some(format!(
            "continuing the existing replica after TXID {}",
            crate::format_txid(replica_max)
        ))
    } else if !sealed_files_continue(&pending, replica_max, s.txid) {
        // E.g. the replica lost files this state saw acknowledged only in memory.
        Some(format!(
            "replica is at TXID {} but this database sealed up to {} and holds no local files \
             to continue from there",
            crate::format_txid(replica_max),
            crate::format_txid(s.txid)
        ))
    } else {
        None
    };
    if let Some(reason) = restart {
        tracing::warn!(db = %db.path.display(), replica = %url, reason = %reason, "restarting the replica chain with a full database file");
        for (min, max) in pending {
            let _ = fs::remove_file(db.meta.l0_path(min, max));
        }
        s.txid = replica_max;
        s.replicated_txid = replica_max;
        // No capture position: whichever process captures next (this one, or the next to open
        // the database if this one's last capture point has passed) stages a full image.
        s.wal = None;
        s.closed = None;
        db.progress.restarted(replica_max);
        st.discard_until_full = true;
        db.require_full(&reason);
    }
    st.state.replica = url;
    db.meta.save_state(&st.state)?;
    for seq in adopted {
        let _ = fs::remove_file(db.meta.segment_path(seq));
    }
    st.reconciled = true;
    Ok(())
}

/// True when the sealed local files `pending` (`(min, max)`, ascending) carry the chain from
/// the replica's `replica_max` on to the sealed `txid` without a gap.
fn sealed_files_continue(pending: &[(TxId, TxId)], replica_max: TxId, txid: TxId) -> bool {
    let mut next = replica_max + 1;
    for &(min, max) in pending {
        if max < next {
            continue;
        }
        if min != next {
            return false;
        }
        next = max + 1;
    }
    next > txid
}

#[cfg(test)]
mod tests {
    use super::sealed_files_continue;

    #[test]
    fn sealed_files_must_bridge_the_replica_to_the_sealed_txid() {
        assert!(sealed_files_continue(&[], 5, 5));
        assert!(
            sealed_files_continue(&[], 7, 5),
            "the replica is ahead: adopted elsewhere"
        );
        assert!(!sealed_files_continue(&[], 0, 1), "the replica lost TXID 1");
        assert!(sealed_files_continue(&[(1, 1)], 0, 1));
        assert!(sealed_files_continue(&[(1, 1), (2, 2), (3, 3)], 1, 3));
        assert!(!sealed_files_continue(&[(1, 1), (3, 3)], 0, 3), "gap at 2");
        assert!(!sealed_files_continue(&[(2, 2)], 2, 3), "3 is missing");
    }
}

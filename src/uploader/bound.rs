//! The bound on staged data while the replica is failing.
//!
//! While the store is down, commits keep succeeding and their data waits in the meta directory
//! (closed segments and sealed L0 files). Without a bound a long outage would fill the disk.
//! When the staged bytes exceed the limit after a failed sync, the backlog is dropped (loudly),
//! the chain is marked to restart, and the next capture stages a full image of the database:
//! once the store is back, that one file brings the replica to the current state.

use std::fs;

use super::SyncState;
use crate::database::Database;

/// Default bound on staged bytes (segments + sealed L0 files) of one database while its replica
/// is failing: 1 GiB keeps a day-long outage of a busy small database, and stays far from
/// filling a typical volume.
pub const DEFAULT_MAX_STAGED_BYTES: u64 = 1 << 30;

/// Overrides [`DEFAULT_MAX_STAGED_BYTES`] (a byte size such as `512MB` or `2GiB`).
pub const MAX_STAGED_BYTES_ENV: &str = "LITESTREAM_MAX_STAGED_BYTES";

/// The configured bound, read once.
pub fn max_staged_bytes() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| match std::env::var(MAX_STAGED_BYTES_ENV) {
        Ok(v) if !v.trim().is_empty() => match crate::config::parse_byte_size(v.trim()) {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::warn!(value = %v, default = DEFAULT_MAX_STAGED_BYTES, "invalid {MAX_STAGED_BYTES_ENV}; using the default");
                DEFAULT_MAX_STAGED_BYTES
            }
        },
        _ => DEFAULT_MAX_STAGED_BYTES,
    })
}

/// The limit for one database: the configured bound, but never less than twice the database
/// (the full image that replaces a dropped backlog must fit, with room for the changes after
/// it, or every failed retry would drop and re-stage it).
pub fn effective_limit(configured: u64, page_size: u32, pages: u32) -> u64 {
    configured.max(2 * u64::from(page_size) * u64::from(pages))
}

fn file_len(path: &std::path::Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes waiting in the meta directory.
fn staged_bytes(db: &Database) -> u64 {
    let segs: u64 = db
        .meta
        .list_segments()
        .unwrap_or_default()
        .into_iter()
        .map(|s| file_len(&db.meta.segment_path(s)))
        .sum();
    let l0: u64 = db
        .meta
        .list_l0()
        .unwrap_or_default()
        .into_iter()
        .map(|(min, max)| file_len(&db.meta.l0_path(min, max)))
        .sum();
    segs + l0
}

/// Called after a failed sync: drops the backlog if it exceeds the bound. True if dropped.
pub(crate) fn enforce(db: &Database) -> bool {
    let mut st = db.sync_state.lock();
    let limit = effective_limit(max_staged_bytes(), st.state.page_size, st.state.commit);
    let staged = staged_bytes(db);
    if staged <= limit {
        return false;
    }
    drop_backlog(db, &mut st, staged, limit);
    true
}

fn drop_backlog(db: &Database, st: &mut SyncState, staged: u64, limit: u64) {
    tracing::error!(
        db = %db.path.display(),
        replica = %db.client.describe(),
        staged_bytes = staged,
        limit_bytes = limit,
        "the replica has been failing and staged data exceeds the limit: dropping the staged \
         backlog; the database keeps working, and once the replica is back the next file \
         sent holds the full database"
    );
    // Sealed files the replica never acknowledged.
    if let Ok(pending) = db.meta.list_l0() {
        for (min, max) in pending {
            if max > st.state.replicated_txid {
                let _ = fs::remove_file(db.meta.l0_path(min, max));
            }
        }
    }
    // Closed segments (the active one is closed first, so its data goes too).
    match db.rotate_segments(st.state.sealed_segment) {
        Ok(segments) => {
            for &seq in &segments {
                let _ = fs::remove_file(db.meta.segment_path(seq));
            }
            if let Some(&last) = segments.last() {
                st.state.sealed_segment = last;
            }
        }
        Err(e) => {
            tracing::warn!(db = %db.path.display(), error = %e, "cannot list staged segments; they are discarded at the next sync")
        }
    }
    st.state.txid = st.state.replicated_txid;
    // Anything captured before the full image continues the dropped history: discard it.
    st.discard_until_full = true;
    if let Err(e) = db.meta.save_state(&st.state) {
        tracing::warn!(db = %db.path.display(), error = %e, "cannot save the replication state after dropping the backlog");
    }
    db.require_full("the staged backlog was dropped while the replica was failing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_never_below_twice_the_database() {
        assert_eq!(effective_limit(1 << 30, 4096, 10), 1 << 30);
        assert_eq!(effective_limit(1 << 20, 4096, 1000), 2 * 4096 * 1000);
        assert_eq!(effective_limit(1 << 20, 0, 0), 1 << 20);
    }
}

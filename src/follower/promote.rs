//! Promotion: a read replica becomes the primary that continues the replica's TXID chain.
//!
//! 1. Refuse while a writer looks live: the replica received a file within the live window
//!    (writer leases are not part of the replica format yet; see docs/read-replicas.md).
//! 2. Catch up to the newest TXID.
//! 3. Under the file's RESERVED lock (no apply can run), write the meta directory state a
//!    primary resumes from (`state.json`: position = that TXID, replica = the followed URL)
//!    and retire `follower.json`. Pollers in any process stop at their next poll.
//!
//! Opened through the extension as a database with that replica, the file then ships its first
//! L0 file at TXID + 1, holding every page (its WAL position is not known yet).

use std::time::{Duration, SystemTime};

use super::dbheader;
use super::follow::{Follower, FollowerConfig};
use super::lock::{acquire, LockLevel};
use super::routing::SYNC_TIMEOUT;
use super::FollowError;
use crate::staging::{MetaDir, State};
use crate::{format_txid, TxId};

/// Default live window: a replica that received a file this recently may still have a writer.
/// Longer than any sensible `sync-interval`, so a live, busy primary is always noticed.
pub const DEFAULT_LIVE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// Promote even if a writer looks live.
    pub force: bool,
    pub live_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub txid: TxId,
    pub replica: String,
}

/// The newest file's age when it is within `window` (a live writer's signal).
fn recent_upload(follower: &Follower, window: Duration) -> Result<Option<Duration>, FollowError> {
    let l0 = follower.client.list(0)?;
    let newest = l0.iter().map(|f| f.created_at).max();
    let now = SystemTime::now();
    Ok(newest
        .map(|t| now.duration_since(t).unwrap_or_default())
        .filter(|age| *age < window))
}

pub fn promote(cfg: FollowerConfig, opts: &PromoteOptions) -> Result<Promoted, FollowError> {
    let follower = Follower::open(cfg)?;
    let live = |f: &Follower| -> Result<(), FollowError> {
        if opts.force {
            return Ok(());
        }
        if let Some(age) = recent_upload(f, opts.live_window)? {
            return Err(FollowError::Config(format!(
                "refusing to promote {}: replica {} received a file {:.1}s ago, so its writer \
                 may still be live; stop it first, wait {}s, or use -force",
                f.path.display(),
                f.replica_url,
                age.as_secs_f64(),
                opts.live_window.as_secs()
            )));
        }
        Ok(())
    };
    live(&follower)?;
    let txid = follower.sync(SYNC_TIMEOUT)?;
    // A writer that uploaded while we caught up is live after all.
    live(&follower)?;

    let mut file =
        super::sys::open(&follower.path).map_err(FollowError::io(&follower.path, "open"))?;
    let policy = &follower.policy;
    if !acquire(policy.shared_wait, || file.lock(LockLevel::Shared)).map_err(|e| {
        FollowError::Db {
            op: "lock",
            source: e,
        }
    })? {
        return Err(FollowError::Config(
            "another connection is writing the replica; try again".to_string(),
        ));
    }
    let res = (|| {
        if !file
            .lock(LockLevel::Reserved)
            .map_err(|e| FollowError::Db {
                op: "lock",
                source: e,
            })?
        {
            return Err(FollowError::Config(
                "another follower is applying to the replica; try again".to_string(),
            ));
        }
        let mut hdr = [0u8; dbheader::HEADER_LEN];
        file.read_at(&mut hdr, 0).map_err(|e| FollowError::Db {
            op: "read",
            source: e,
        })?;
        let state = follower.meta.load()?.ok_or(FollowError::Internal(
            "follower state vanished during promotion",
        ))?;
        let at = state
            .txid_for_counter(dbheader::change_counter(&hdr))
            .ok_or_else(|| {
                FollowError::Config(
                    "the replica file changed outside the follower; sync it first".to_string(),
                )
            })?;
        if at != txid {
            return Err(FollowError::Config(format!(
                "the replica moved from TXID {} to {} during promotion; try again",
                format_txid(txid),
                format_txid(at)
            )));
        }
        let page_size = dbheader::page_size(&hdr).unwrap_or(0);
        let meta = MetaDir::for_db(&follower.path, None);
        meta.create_dirs()?;
        meta.save_state(&State {
            txid: at,
            replicated_txid: at,
            page_size,
            commit: dbheader::page_count(&hdr),
            replica: follower.replica_url.clone(),
            ..State::default()
        })?;
        let retired = follower.meta.dir.join("follower.json.promoted");
        std::fs::rename(follower.meta.state_path(), &retired)
            .map_err(FollowError::io(&retired, "retire follower state"))?;
        Ok(at)
    })();
    let unlocked = file.unlock(LockLevel::None);
    let at = res?;
    unlocked.map_err(|e| FollowError::Db {
        op: "unlock",
        source: e,
    })?;
    tracing::warn!(path = %follower.path.display(), replica = %follower.replica_url, txid = %format_txid(at), "read replica promoted to primary; open it as a database with this replica to continue the chain");
    Ok(Promoted {
        txid: at,
        replica: follower.replica_url.clone(),
    })
}

//! A read replica's progress, as the SQL surface and the CLI report it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{format_txid, restore, TxId};

/// A snapshot of a follower's progress (the API the SQL surface reports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerStatus {
    pub name: Option<String>,
    pub path: PathBuf,
    /// URL of the replica followed.
    pub replica: String,
    /// Primary TXID the local file holds (0 if unknown yet).
    pub txid: TxId,
    /// Newest TXID seen in the replica.
    pub primary_txid: TxId,
    pub last_poll: Option<SystemTime>,
    /// Last time the local file was confirmed to hold the replica's newest TXID.
    pub last_current: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Applies have been held off by readers since then (None: not held off).
    pub deferred_since: Option<SystemTime>,
    /// A background poller runs for it in this process.
    pub following: bool,
}

impl FollowerStatus {
    /// Seconds since the replica last confirmed it was current with the store (`litestream_lag()`
    /// on a read replica); `None` before the first confirmation.
    pub fn lag_seconds(&self, now: SystemTime) -> Option<f64> {
        let t = self.last_current?;
        Some(now.duration_since(t).unwrap_or_default().as_secs_f64())
    }

    /// The status as JSON (for `litestream_replica_status()` and the CLI).
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "path": self.path.display().to_string(),
            "replica": self.replica,
            "txid": format_txid(self.txid),
            "primary_txid": format_txid(self.primary_txid),
            "lag": self.lag_seconds(now),
            "last_poll": self.last_poll.map(restore::format_time),
            "last_current": self.last_current.map(restore::format_time),
            "last_error": self.last_error,
            "deferred_since": self.deferred_since.map(restore::format_time),
            "following": self.following,
        })
    }
}

pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_seconds_since_last_confirmed_current() {
        let now = from_ms(1_700_000_010_000);
        let mut st = FollowerStatus {
            txid: 0x2a,
            primary_txid: 0x2b,
            ..FollowerStatus::default()
        };
        assert_eq!(st.lag_seconds(now), None);
        st.last_current = Some(from_ms(1_700_000_007_500));
        assert_eq!(st.lag_seconds(now), Some(2.5));
        let j = st.to_json(now);
        assert_eq!(j["txid"], "000000000000002a");
        assert_eq!(j["primary_txid"], "000000000000002b");
        assert_eq!(j["lag"], 2.5);
        assert_eq!(to_ms(now), 1_700_000_010_000);
    }
}

//! The lock policy of an apply: how long the follower waits for readers, and how it backs off
//! so that neither side starves (docs/read-replicas.md, "Locking").
//!
//! SQLite's rollback-journal locks, taken through the default VFS on the replica file:
//! SHARED (readers) → RESERVED (one writer, readers continue) → PENDING (no new readers) →
//! EXCLUSIVE (no readers). The follower holds PENDING only for a bounded drain window; if the
//! readers present then have not finished, it releases everything, lets new readers in, and
//! retries after a growing pause. After being held off for [`LockPolicy::escalate_after`] it
//! uses a longer window, so that a stream of overlapping short readers cannot keep the replica
//! stale, while the window stays below the readers' busy timeout so they wait rather than fail.

use std::io;
use std::time::{Duration, Instant};

/// SQLite lock levels (sqlite3.h `SQLITE_LOCK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockLevel {
    None = 0,
    Shared = 1,
    Reserved = 2,
    Exclusive = 4,
}

/// Busy timeout the extension sets on connections that read a replica: far longer than the
/// longest drain window, so a reader that arrives while an apply holds PENDING waits for it.
pub const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause between two lock attempts within one wait; it doubles up to
/// [`MAX_LOCK_POLL`] (SQLite's own busy handler starts at 1 ms too).
const MIN_LOCK_POLL: Duration = Duration::from_millis(1);
/// Longest pause between two lock attempts within one wait.
const MAX_LOCK_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct LockPolicy {
    /// How long to wait for SHARED: it is refused only while another writer holds PENDING or
    /// EXCLUSIVE (another follower applying, a connection rolling back a hot journal).
    pub shared_wait: Duration,
    /// How long PENDING is held waiting for the current readers to finish. Short read
    /// transactions (milliseconds) finish within it; new readers wait at most this long.
    pub drain_wait: Duration,
    /// After applies were held off by readers this long in a row, use `escalated_drain_wait`.
    pub escalate_after: Duration,
    /// The longer window: still well below [`READER_BUSY_TIMEOUT`].
    pub escalated_drain_wait: Duration,
    /// First pause before retrying a held-off apply; doubles up to `max_retry_delay`. Readers
    /// get the file to themselves during the pause.
    pub min_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            shared_wait: Duration::from_secs(2),
            drain_wait: Duration::from_millis(100),
            escalate_after: Duration::from_secs(10),
            escalated_drain_wait: Duration::from_millis(1500),
            min_retry_delay: Duration::from_millis(50),
            max_retry_delay: Duration::from_secs(1),
        }
    }
}

impl LockPolicy {
    /// The drain window for an apply that has been held off for `deferred_for`.
    pub fn drain_wait_for(&self, deferred_for: Duration) -> Duration {
        if deferred_for >= self.escalate_after {
            self.escalated_drain_wait
        } else {
            self.drain_wait
        }
    }

    /// The pause before retry number `attempt` (1-based) of a held-off apply.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(16);
        (self.min_retry_delay * (1u32 << shift)).min(self.max_retry_delay)
    }
}

/// Calls `try_lock` until it returns true or `wait` has passed (at least one attempt),
/// pausing between attempts. Returns whether the lock was obtained.
pub fn acquire(wait: Duration, mut try_lock: impl FnMut() -> io::Result<bool>) -> io::Result<bool> {
    let deadline = Instant::now() + wait;
    let mut pause = MIN_LOCK_POLL;
    loop {
        if try_lock()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_LOCK_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_and_retry_backoff() {
        let p = LockPolicy::default();
        assert_eq!(p.drain_wait_for(Duration::ZERO), p.drain_wait);
        assert_eq!(p.drain_wait_for(p.escalate_after), p.escalated_drain_wait);
        assert!(p.escalated_drain_wait < READER_BUSY_TIMEOUT);
        assert_eq!(p.retry_delay(1), p.min_retry_delay);
        assert_eq!(p.retry_delay(2), p.min_retry_delay * 2);
        assert_eq!(p.retry_delay(40), p.max_retry_delay);
    }

    #[test]
    fn acquire_tries_until_success_or_deadline() {
        let mut n = 0;
        assert!(acquire(Duration::from_secs(5), || {
            n += 1;
            Ok(n == 3)
        })
        .unwrap());
        assert_eq!(n, 3);
        let mut m = 0;
        assert!(!acquire(Duration::ZERO, || {
            m += 1;
            Ok(false)
        })
        .unwrap());
        assert_eq!(m, 1, "one attempt even with no time to wait");
        assert!(acquire(Duration::from_secs(1), || Err(io::Error::other("x"))).is_err());
    }
}

//! Logging of failed captures. A capture fails at every commit while its cause lasts (a full
//! meta disk): the commits succeed and the data waits in the WAL, so one line per commit
//! would only flood the log (also when failures and successes alternate, as the uploader
//! frees space). The first failure is logged at once, then at most one line per
//! [`CAPTURE_ERROR_LOG_INTERVAL`], with the count of failures not logged since the previous
//! line; the status shows whether the last capture failed.
use std::path::Path;
use std::time::{Duration, Instant};

use crate::logging::RepeatLimiter;

/// While captures keep failing, their error is logged at most this often: the same interval
/// as the lag alert's repeat, visible in a log tail without flooding it.
pub(crate) const CAPTURE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) fn new_limiter() -> RepeatLimiter {
    RepeatLimiter::new(CAPTURE_ERROR_LOG_INTERVAL)
}

/// A capture of `db` failed with `error`: logs it unless rate-limited.
pub(crate) fn failed(limiter: &mut RepeatLimiter, db: &Path, error: &dyn std::fmt::Display) {
    if let Some(suppressed) = limiter.occurred(Instant::now()) {
        tracing::error!(
            db = %db.display(),
            error = %error,
            suppressed,
            "capture failed; will retry at the next commit"
        );
    }
}

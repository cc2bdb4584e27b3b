//! What the uploader does when its work on one database panics (policy:
//! [`crate::panic_guard::Supervision`]): the panic is logged with the database and the message
//! and shown as the database's `last_error`; the database's in-memory replication position is
//! reloaded from `state.json` and compared with the replica again (as after a crash), and its
//! sync restarts after [`crate::panic_guard::RESTART_DELAY`]. If the first sync after that
//! restart panics too, replication of the database stops in this process with
//! [`SyncError::Stopped`]: the application's commits keep succeeding and stay staged locally,
//! and the next process that opens the database ships them.

use std::collections::HashMap;
use std::sync::Arc;

use super::{SyncError, SyncState};
use crate::database::Database;
use crate::panic_guard::{AfterPanic, Supervision};

/// The restart state of every database the uploader has worked on.
#[derive(Default)]
pub(super) struct Supervised {
    restarts: HashMap<usize, Supervision>,
    /// Databases whose replication stopped (kept alive so that their key stays theirs).
    stopped: HashMap<usize, Arc<Database>>,
}

fn key(db: &Arc<Database>) -> usize {
    Arc::as_ptr(db) as usize
}

impl Supervised {
    pub(super) fn is_stopped(&self, db: &Arc<Database>) -> bool {
        self.stopped.contains_key(&key(db))
    }

    pub(super) fn any_stopped(&self) -> bool {
        !self.stopped.is_empty()
    }

    /// Runs `f` (work on `db`); a panic is reported and becomes what to do next.
    pub(super) fn run<T>(
        &mut self,
        db: &Arc<Database>,
        f: impl FnOnce() -> T,
    ) -> Result<T, AfterPanic> {
        match crate::panic_guard::catch(f) {
            Ok(v) => {
                if let Some(s) = self.restarts.get_mut(&key(db)) {
                    s.finished();
                }
                Ok(v)
            }
            Err(crate::panic_guard::Panicked(message)) => {
                let after = self.restarts.entry(key(db)).or_default().panicked();
                report(db, message, after);
                if after == AfterPanic::Stop {
                    self.restarts.remove(&key(db));
                    self.stopped.insert(key(db), Arc::clone(db));
                }
                Err(after)
            }
        }
    }
}

fn report(db: &Database, message: String, after: AfterPanic) {
    let mut st = db.sync_state.lock();
    // The panic may have left the in-memory position half-updated: start again from what is
    // on disk, and compare it with the replica before the next upload (as after a crash).
    if let Ok(saved) = db.meta.load_state() {
        let kept = (st.last_sync, st.discard_until_full);
        *st = SyncState::new(saved.unwrap_or_default());
        (st.last_sync, st.discard_until_full) = kept;
    }
    st.reconciled = false;
    let err = match after {
        AfterPanic::Restart(delay) => SyncError::Panicked {
            message,
            retry_in: crate::config::format_go_duration(delay),
        },
        AfterPanic::Stop => SyncError::Stopped { message },
    };
    st.last_error = Some(err.to_string());
    drop(st);
    crate::metrics::record_sync_error(&db.path);
    match after {
        AfterPanic::Restart(delay) => {
            db.progress.sync_failed(err.to_string());
            tracing::error!(db = %db.path.display(), replica = %db.client.describe(), error = %err, restart_in_ms = delay.as_millis() as u64, "the uploader panicked while syncing this database; its sync restarts (please report)");
        }
        AfterPanic::Stop => {
            db.progress.stopped(err.to_string());
            tracing::error!(db = %db.path.display(), replica = %db.client.describe(), error = %err, hint = err.remedy(db), "replication of this database stopped (please report)");
        }
    }
}

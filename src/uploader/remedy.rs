//! What the log line of a failed sync tells the operator to do about it.

use super::SyncError;
use crate::database::Database;
use crate::replica::ReplicaError;

impl SyncError {
    /// What to do about a failed sync of `db`, for the log line.
    pub fn remedy(&self, db: &Database) -> String {
        let meta = db.meta.root.display();
        match self {
            SyncError::Replica(ReplicaError::Transient { .. }) => format!(
                "the replica is unreachable or failing; commits stay staged in {meta} and are \
             uploaded when it is back"
            ),
            SyncError::Replica(ReplicaError::Fatal { .. }) => format!(
                "fix the replica's location, permissions or credentials in the configuration; \
             commits stay staged in {meta} until then"
            ),
            SyncError::Replica(
                ReplicaError::AlreadyExists { .. } | ReplicaError::Precondition { .. },
            ) => "another process may be writing this replica: replicate each database from one \
             process only"
                .to_string(),
            SyncError::Replica(ReplicaError::NotFound { .. }) => {
                "a replica file disappeared while in use: check what else deletes files there"
                    .to_string()
            }
            SyncError::Panicked { .. } => {
                "an internal error (please report it with this log); nothing committed is lost"
                    .to_string()
            }
            SyncError::Stopped { .. } => format!(
                "an internal error (please report it with this log); the application's writes \
             keep succeeding and stay staged in {meta}: the next process that opens the \
             database ships them"
            ),
            SyncError::Staging(_) | SyncError::Ltx { .. } => {
                format!("local staging failed: check free disk space and permissions of {meta}")
            }
        }
    }
}

//! Restore: plan which LTX files rebuild the database (pure, spec §4.2), then apply them into a
//! temp file that is renamed into place only when every checksum verified (spec §4.3).

mod apply;
mod plan;

pub use apply::{restore, RestoreError, RestoreOptions, RestoreOutcome};
pub use plan::{plan, PlanError, Target};

//! Restore: plan which LTX files rebuild the database (pure, spec §4.2), then apply them into a
//! temp file that is renamed into place only when every checksum verified (spec §4.3).

mod apply;
mod fetch;
mod pages;
mod plan;

#[cfg(test)]
pub(crate) use apply::stamp_header;
pub use apply::{
    plan_replica, restore, restore_with_progress, RestoreError, RestoreOptions, RestoreOutcome,
    RestoreProgress, DEFAULT_PARALLELISM,
};
pub use plan::{format_time, plan, plan_continuation, PlanError, Target};

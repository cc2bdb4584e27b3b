//! Google Cloud Storage (`gs`) replicas end to end, against fake-gcs-server on loopback
//! (started by the harness; clients find it, or the fault proxy in front of it, through
//! `STORAGE_EMULATOR_HOST`): the shared backend scenarios (`harness/backend_scenarios.rs`: VFS
//! writes restore with ours and the official binary, official `replicate` restores with ours,
//! faults through the proxy, no request while idle).
//!
//! Needs: the extension, our CLI, the official binary and fake-gcs-server (`make test` provides
//! them; without the emulator the tests print a skip, unless
//! `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use litestream_tests::backend_scenarios as scenario;
use litestream_tests::FakeGcs;

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(gcs) = FakeGcs::shared() else { return };
    scenario::vfs_writes_restore_with_ours_and_official(gcs);
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(gcs) = FakeGcs::shared() else { return };
    scenario::official_replicate_then_our_restore(gcs);
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(gcs) = FakeGcs::shared() else { return };
    scenario::faults_never_fail_writes(gcs);
}

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(gcs) = FakeGcs::shared() else { return };
    scenario::an_idle_database_makes_no_requests(gcs);
}

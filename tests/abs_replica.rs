//! Azure Blob Storage (`abs`) replicas end to end, against Azurite on loopback (started by the
//! harness): the shared backend scenarios (`harness/backend_scenarios.rs`: VFS writes restore
//! with ours and the official binary, official `replicate` restores with ours, faults through
//! the proxy, no request while idle, the account key never logged).
//!
//! Needs: the extension, our CLI, the official binary and Azurite (`make test` provides them;
//! without Azurite the tests print a skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use litestream_tests::backend_scenarios as scenario;
use litestream_tests::Azurite;

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(az) = Azurite::shared() else { return };
    scenario::vfs_writes_restore_with_ours_and_official(az);
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(az) = Azurite::shared() else { return };
    scenario::official_replicate_then_our_restore(az);
}

#[test]
fn a_third_of_requests_failing_never_fails_writes_and_the_replica_catches_up() {
    let Some(az) = Azurite::shared() else { return };
    scenario::faults_never_fail_writes(az);
}

#[test]
fn an_idle_database_makes_no_requests() {
    let Some(az) = Azurite::shared() else { return };
    scenario::an_idle_database_makes_no_requests(az);
}

//! NATS JetStream object store (`nats`) replicas end to end, against nats-server on loopback
//! (started by the harness, one user, buckets created with nats-py): the shared backend
//! scenarios (`harness/backend_scenarios.rs`) that apply: VFS writes restore with ours and the
//! official binary, official `replicate` restores with ours, the password never logged.
//!
//! NATS is not HTTP, so the HTTP fault proxy and the request-counting idle scenario do not
//! apply here.
//!
//! Needs: the extension, our CLI, the official binary, nats-server and nats-py (`make test`
//! provides them; without them the tests print a skip, unless
//! `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use litestream_tests::backend_scenarios as scenario;
use litestream_tests::NatsServer;

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(srv) = NatsServer::shared() else {
        return;
    };
    scenario::vfs_writes_restore_with_ours_and_official(srv);
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(srv) = NatsServer::shared() else {
        return;
    };
    scenario::official_replicate_then_our_restore(srv);
}

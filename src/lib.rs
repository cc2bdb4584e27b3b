//! liblitestream: continuous replication of SQLite to object storage, built into SQLite as a VFS.
//!
//! Layers, top uses bottom; a module never names one of a higher layer (checked by
//! `layering_tests`, drawn in `docs/architecture.md`):
//! - entry points: [`ffi`] (the only `unsafe` code: extension entry point, VFS trampolines,
//!   SQL functions) and [`cli`] (the `litestream` binary).
//! - surface: [`sql`], [`vfs`] (safe per-file hooks behind the trampolines), [`status`],
//!   [`monitor`] (lag alerts), [`heartbeat`] (`heartbeat-url` pings).
//! - process: [`registry`], one [`database::Database`] per managed path.
//! - background work: [`uploader`], [`compactor`], [`fencing`].
//! - one database: [`database`] (the write path's hooks), [`bootstrap`] (restore on open),
//!   [`follower`] (read replicas).
//! - local state: [`capture`], [`pending`] (lazy capture: commits recorded, copied later),
//!   [`stager`] (which process stages a database), [`staging`], [`restore`], [`progress`],
//!   [`l0_cache`], [`validate`] (validation mode).
//! - backends: [`replica`]. Foundation: [`config`], [`metrics`] (counters, `/metrics`),
//!   [`logging`], [`replicate_all`] (test mode: replicate every database), `panic_guard`
//!   (the panic guard of the FFI and the supervision of background threads).
//! - format: [`ltx`] (with the chain-link rule, [`ltx::check_link`]), [`wal`], pure codecs.

pub(crate) mod bootstrap;
pub(crate) mod capture;
pub mod cli;
pub(crate) mod compactor;
pub(crate) mod config;
pub(crate) mod database;
pub(crate) mod fencing;
pub(crate) mod ffi;
pub(crate) mod follower;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod heartbeat;
pub(crate) mod l0_cache;
pub(crate) mod logging;
pub(crate) mod ltx;
pub(crate) mod metrics;
pub(crate) mod monitor;
mod panic_guard;
pub(crate) mod pending;
pub(crate) mod progress;
pub(crate) mod registry;
pub(crate) mod replica;
pub(crate) mod replicate_all;
pub(crate) mod restore;
pub(crate) mod shared_status;
pub(crate) mod small_file;
pub(crate) mod sql;
pub(crate) mod stager;
pub(crate) mod staging;
pub(crate) mod status;
pub(crate) mod uploader;
pub(crate) mod validate;
pub(crate) mod vfs;
pub(crate) mod wake;
pub(crate) mod wal;

/// A Litestream transaction ID: one per L0 file, not one per SQLite transaction.
pub type TxId = u64;

/// Formats a TXID the way Litestream names files and prints positions: 16 lowercase hex digits.
pub fn format_txid(txid: TxId) -> String {
    format!("{txid:016x}")
}

/// Parses exactly 16 hex digits (Litestream's `-txid` rule: `-txid 3` is an error).
pub fn parse_txid(s: &str) -> Option<TxId> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod layering_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txid_round_trip() {
        assert_eq!(format_txid(0x3a), "000000000000003a");
        assert_eq!(parse_txid("000000000000003a"), Some(0x3a));
        assert_eq!(parse_txid("000000000000003A"), Some(0x3a));
        assert_eq!(parse_txid("3a"), None);
        assert_eq!(parse_txid("00000000000000zz"), None);
    }
}

//! liblitestream: continuous replication of SQLite to object storage, built into SQLite as a VFS.
//!
//! Layers, top uses bottom (see `docs/architecture.md`):
//! - [`ffi`]: the only `unsafe` code: extension entry point, VFS trampolines.
//! - [`vfs`]: safe per-file hooks behind the trampolines (which file is managed, commit points).
//! - [`database`], [`capture`], [`staging`], [`uploader`]: the write path of one managed database.
//! - [`progress`], [`status`], [`sql`], [`metrics`], [`monitor`]: what users see of it (pragmas,
//!   SQL functions, Prometheus metrics, lag alerts).
//! - [`restore`]: plan + apply, shared by the CLI and restore-on-open.
//! - [`ltx`], [`wal`]: pure codecs. [`replica`]: storage backends. [`config`]: `litestream.yml`.
//! - [`replicate_all`], [`validate`]: test modes (replicate every database; check each capture).

pub mod bootstrap;
pub mod capture;
pub mod cli;
pub mod compactor;
pub mod config;
pub mod database;
pub mod fencing;
pub mod ffi;
pub mod follower;
pub mod l0_cache;
pub mod logging;
pub mod ltx;
pub mod metrics;
pub mod monitor;
pub mod progress;
pub mod registry;
pub mod replica;
pub mod replicate_all;
pub mod restore;
pub mod sql;
pub mod staging;
pub mod status;
pub mod uploader;
pub mod validate;
pub mod vfs;
pub mod wal;

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

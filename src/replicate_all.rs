//! Test mode `LITESTREAM_REPLICATE_ALL=<dir>`: every main database opened through the VFS that
//! the configuration does not name is replicated to a `file` replica under `<dir>`.
//!
//! Made for running SQLite's own test suite through the extension (`make sqlite-tests`,
//! `docs/sqlite-testsuite.md`), so that capture, staging and upload run under every test. It
//! never changes what SQLite does: unlike a configured database, the journal mode is left alone
//! (only databases the test itself puts in WAL mode produce replica files), and the staging
//! directory lives under `<dir>`, not beside the database, so tests that list or delete files
//! next to their databases see nothing of ours.
//!
//! Layout: `<dir>/<process>/<db>/{meta,replica}` where `<process>` is unique per process
//! (pid and start time) and `<db>` is the database file name plus a hash of its full path.
//! One directory per process, because several processes replicating the same database at the
//! same time is not supported (their staging would collide); the suite runs many such
//! multi-process tests.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::{self, DbConfig};

/// The environment variable that turns the mode on (its value: the scratch directory).
pub const ENV: &str = "LITESTREAM_REPLICATE_ALL";

/// Longest database file name kept in a directory name (the hash keeps names unique); keeps
/// paths short when tests use long file names.
const MAX_NAME_CHARS: usize = 40;

/// The scratch directory, when the mode is on (read once per process).
pub fn root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .as_deref()
}

/// True when the mode is on.
pub fn enabled() -> bool {
    root().is_some()
}

/// This process's directory name: pid plus start time, so that a reused pid gets a new one.
fn process_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("p{}-{:x}", std::process::id(), nanos)
    })
}

/// Directory name for one database: a sanitized file name and a hash of the full path.
pub fn db_dir_name(db_path: &Path) -> String {
    let name: String = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db_path.hash(&mut h);
    format!("{name}-{:016x}", h.finish())
}

/// The database entry for `db_path` under `root`, for process `tag`.
pub fn db_config_in(root: &Path, tag: &str, db_path: &Path) -> DbConfig {
    let base = root.join(tag).join(db_dir_name(db_path));
    DbConfig {
        path: db_path.to_path_buf(),
        meta_path: Some(base.join("meta")),
        replica: config::ReplicaConfig {
            backend: config::Backend::File {
                path: base.join("replica"),
            },
            sync_interval: config::DEFAULT_SYNC_INTERVAL,
        },
        restore_if_db_not_exists: false,
        lag_alert: None,
        read_replicas: Vec::new(),
    }
}

/// The entry for a database the configuration does not name, when the mode is on.
pub fn db_config(db_path: &Path) -> Option<DbConfig> {
    root().map(|r| db_config_in(r, process_tag(), db_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_under_the_root_and_unique_per_path() {
        let root = Path::new("/scratch/rep");
        let a = db_config_in(root, "p1-0", Path::new("/t/x/test.db"));
        let b = db_config_in(root, "p1-0", Path::new("/t/y/test.db"));
        let meta_a = a.meta_path.clone().expect("meta path set");
        assert!(meta_a.starts_with("/scratch/rep/p1-0"));
        assert!(meta_a.ends_with("meta"));
        assert_ne!(a.meta_path, b.meta_path);
        match &a.replica.backend {
            config::Backend::File { path } => {
                assert_eq!(path.parent(), meta_a.parent());
                assert!(path.ends_with("replica"));
            }
            other => panic!("expected a file replica, got {other:?}"),
        }
        assert_eq!(a.path, Path::new("/t/x/test.db"));
    }

    #[test]
    fn odd_file_names_are_sanitized_and_bounded() {
        let long = format!("/t/{}\u{e9} x?.db", "n".repeat(100));
        let name = db_dir_name(Path::new(&long));
        assert!(name.len() <= MAX_NAME_CHARS + 17, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert_ne!(
            db_dir_name(Path::new("/a/test.db")),
            db_dir_name(Path::new("/b/test.db"))
        );
    }
}

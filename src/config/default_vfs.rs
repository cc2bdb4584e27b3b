//! `vfs.default`: whether loading the extension makes `litestream` SQLite's default VFS.
//!
//! ```yaml
//! vfs:
//!   default: auto    # auto (the default), true or false
//! ```
//!
//! - `auto`: the default VFS as soon as the configuration names a database, so that a plain
//!   open of that database (no `?vfs=litestream`, which hosts such as better-sqlite3 cannot
//!   pass) is replicated. Every other file passes through the VFS untouched. Without a
//!   configuration file, or with one naming no database, `litestream` is registered but not
//!   made the default, and only `?vfs=litestream` URIs reach it.
//! - `true`: always the default (zero-config `?replica=` URIs still need `vfs=litestream`).
//! - `false`: never; open the databases with `?vfs=litestream` yourself.
//!
//! `LD_PRELOAD` always makes it the default: the point of preloading is not changing the
//! program.

use serde::Deserialize;
use thiserror::Error;

use super::Config;

/// The value of `vfs.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultVfs {
    /// The default VFS when the configuration names at least one database.
    #[default]
    Auto,
    Always,
    Never,
}

/// `vfs:` as written.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawVfs {
    pub default: Option<RawDefault>,
}

/// `vfs.default` as written: a YAML boolean or a word.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDefault {
    Bool(bool),
    Word(String),
}

/// What the message says when `vfs.default` holds anything else.
pub(crate) const DEFAULT_VFS_VALUES: &str = "use auto, true or false";

/// `vfs.default` holds a word other than `auto`, `true` or `false`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown value {value:?} ({DEFAULT_VFS_VALUES})")]
pub struct DefaultVfsError {
    pub value: String,
}

impl RawDefault {
    /// The typed value; `Err` for a word other than `auto`, `true` or `false`.
    pub(crate) fn resolve(&self) -> Result<DefaultVfs, DefaultVfsError> {
        match self {
            RawDefault::Bool(true) => Ok(DefaultVfs::Always),
            RawDefault::Bool(false) => Ok(DefaultVfs::Never),
            RawDefault::Word(w) => match w.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => Ok(DefaultVfs::Auto),
                "true" => Ok(DefaultVfs::Always),
                "false" => Ok(DefaultVfs::Never),
                _ => Err(DefaultVfsError { value: w.clone() }),
            },
        }
    }
}

/// Whether loading the extension (`.load`, `load_extension`, an auto-loaded extension list)
/// registers `litestream` as SQLite's default VFS, given the process configuration
/// (`None`: no configuration file).
pub fn default_on_load(config: Option<&Config>) -> bool {
    let Some(config) = config else {
        return false;
    };
    match config.vfs_default {
        DefaultVfs::Always => true,
        DefaultVfs::Never => false,
        DefaultVfs::Auto => !config.dbs.is_empty() || !config.dirs.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_text, resolve, ConfigError};

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let env = resolve::Env {
            cwd: Path::new("/srv"),
            home: None,
        };
        parse_text(yaml, Some(Path::new("litestream.yml")), &|_| None, &env)
    }

    const ONE_DB: &str =
        "dbs:\n  - path: /data/app.db\n    replica: {type: file, path: /backups/app}\n";

    fn decide(yaml: &str) -> bool {
        default_on_load(Some(&parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))))
    }

    #[test]
    fn no_configuration_file_keeps_the_system_default() {
        assert!(!default_on_load(None));
    }

    #[test]
    fn auto_follows_whether_a_database_is_named() {
        assert!(decide(ONE_DB));
        assert!(decide(&format!("vfs: {{default: auto}}\n{ONE_DB}")));
        assert!(decide(&format!("vfs:\n  default: AUTO\n{ONE_DB}")));
        assert!(!decide("logging: {level: info}\n"));
        assert!(!decide("dbs: []\n"));
        assert!(!decide(""));
        // An empty `vfs:` block is the default too.
        assert!(decide(&format!("vfs:\n{ONE_DB}")));
        assert!(decide(&format!("vfs: {{}}\n{ONE_DB}")));
    }

    #[test]
    fn true_and_false_override_auto() {
        assert!(!decide(&format!("vfs: {{default: false}}\n{ONE_DB}")));
        assert!(!decide(&format!("vfs: {{default: \"false\"}}\n{ONE_DB}")));
        assert!(decide("vfs: {default: true}\n"));
        assert!(decide("vfs: {default: \"True\"}\ndbs: []\n"));
    }

    #[test]
    fn unknown_keys_inside_vfs_are_accepted() {
        assert!(decide(&format!(
            "vfs:\n  default: true\n  some-later-key: 3\n{ONE_DB}"
        )));
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_choices() {
        let e = parse(&format!("vfs:\n  default: sometimes\n{ONE_DB}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vfs.default"), "{e}");
        assert!(e.contains("sometimes"), "{e}");
        assert!(e.contains(DEFAULT_VFS_VALUES), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("vfs: [1, 2]\n").unwrap_err().to_string();
        assert!(e.contains("vfs"), "{e}");
    }
}

//! `-config PATH` and `-no-expand-env`, shared by every command that reads the configuration.

use std::path::{Path, PathBuf};

use super::{CliError, FlagSet};
use crate::config::{self, Config};

/// Adds `-config` and `-no-expand-env` to a flag set.
pub fn flags(set: FlagSet) -> FlagSet {
    set.value("config").bool("no-expand-env")
}

/// The configuration file to read: `-config`, else `$LITESTREAM_CONFIG`, else
/// `/etc/litestream.yml`.
pub fn path(flag: Option<&str>) -> PathBuf {
    match flag.filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => config::default_path(),
    }
}

/// Loads the configuration (`expand`: `$VAR` expansion, off with `-no-expand-env`) and starts
/// logging with its `logging` section. A missing default file says how to name one.
pub fn load(flag: Option<&str>, expand: bool) -> Result<Config, CliError> {
    let file = path(flag);
    if flag.is_none() && !file.exists() {
        return Err(CliError::Usage(format!(
            "config file not found: {}; use -config PATH or set LITESTREAM_CONFIG",
            file.display()
        )));
    }
    let cfg = config::load_with(Path::new(&file), expand)?;
    crate::logging::init(&cfg.logging);
    Ok(cfg)
}

/// [`load`] with the flags of a parsed command line.
pub fn load_parsed(f: &super::Parsed) -> Result<Config, CliError> {
    load(f.get("config"), !f.flag("no-expand-env"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_expand_env_keeps_dollar_signs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.yml");
        std::fs::write(
            &file,
            "dbs:\n  - path: /data/$HOME.db\n    replica: {url: file:///b}\n",
        )
        .unwrap();
        let p = file.to_string_lossy();
        let c = load(Some(&p), false).unwrap();
        assert_eq!(c.dbs[0].path, Path::new("/data/$HOME.db"));
        let c = load(Some(&p), true).unwrap();
        assert_ne!(c.dbs[0].path, Path::new("/data/$HOME.db"));
        let e = load(Some("/nonexistent/l.yml"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/l.yml"), "{e}");
    }
}

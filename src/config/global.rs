//! The process-wide configuration: `litestream.yml` loaded once, on first use, and read by every
//! layer that needs a setting (the registry, the uploader, the compactor, the follower).

use std::sync::OnceLock;

use super::{load_default, Config, ConfigError};

static CONFIG: OnceLock<Result<Option<Config>, ConfigError>> = OnceLock::new();

/// The configuration from `LITESTREAM_CONFIG` or `/etc/litestream.yml`, loaded on first use.
/// `Ok(None)`: no configuration file (only `?replica=` URIs are replicated). The error is
/// the one of the first load, kept for the life of the process.
pub fn global() -> Result<Option<&'static Config>, &'static ConfigError> {
    CONFIG
        .get_or_init(load_default)
        .as_ref()
        .map(Option::as_ref)
}

//! The process-wide configuration: `litestream.yml` loaded once, on first use, and read by every
//! layer that needs a setting (the registry, the uploader, the compactor, the follower).

use std::sync::OnceLock;

use super::{load_default, Config};

static CONFIG: OnceLock<Result<Option<Config>, String>> = OnceLock::new();

/// The configuration from `LITESTREAM_CONFIG` or `/etc/litestream.yml`, loaded on first use.
/// `Ok(None)`: no configuration file (only `?replica=` URIs are replicated).
pub fn global() -> Result<Option<&'static Config>, String> {
    CONFIG
        .get_or_init(|| load_default().map_err(|e| e.to_string()))
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

//! Logging setup. STUB.
pub fn init(_cfg: &crate::config::LoggingConfig) {}

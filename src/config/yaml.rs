//! The YAML as written: serde structs for every `litestream.yml` key of spec §5 that this
//! library reads (or refuses). Unknown keys are ignored, as Litestream parses non-strictly.
//! Leaf values with a syntax of their own (durations, sizes) are checked here so that serde
//! reports their line and column; everything else is checked in `resolve`.
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::duration::{ByteSize, GoDuration};

/// The top level. The global replica defaults are read separately as a [`RawReplica`] from
/// the same document (every replica key may also appear at the top level).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    pub dbs: Option<Vec<RawDb>>,
    pub levels: Option<Vec<RawLevel>>,
    pub snapshot: Option<RawSnapshot>,
    pub l0_retention: Option<GoDuration>,
    pub l0_retention_check_interval: Option<GoDuration>,
    pub retention: Option<RawRetention>,
    pub addr: Option<String>,
    pub logging: Option<RawLogging>,
    pub lag_alert: Option<GoDuration>,
    pub shutdown_sync_timeout: Option<GoDuration>,
    pub shutdown_sync_interval: Option<GoDuration>,
    /// `exec`: the command `litestream replicate` starts (as its `-exec` flag).
    pub exec: Option<String>,
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: Option<GoDuration>,
    pub vfs: Option<super::default_vfs::RawVfs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawLevel {
    pub interval: GoDuration,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawSnapshot {
    pub interval: Option<GoDuration>,
    pub retention: Option<GoDuration>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawRetention {
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawLogging {
    pub level: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub stderr: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawDb {
    pub path: Option<String>,
    /// Directory mode (`dir` + `pattern` [+ `recursive`, `watch`, `meta-dir`]).
    pub dir: Option<String>,
    pub pattern: Option<String>,
    pub recursive: Option<bool>,
    pub watch: Option<bool>,
    pub meta_dir: Option<String>,
    pub meta_path: Option<String>,
    pub restore_if_db_not_exists: Option<bool>,
    pub snapshot: Option<RawSnapshot>,
    pub lag_alert: Option<GoDuration>,
    pub replica: Option<RawReplica>,
    pub replicas: Option<Vec<RawReplica>>,
    pub read_replicas: Option<Vec<RawReadReplica>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawReadReplica {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub poll_interval: Option<GoDuration>,
}

/// One replica (or, read from the top level, the global replica defaults). Deliberately
/// without `Debug`: it holds secrets.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct RawReplica {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub path: Option<String>,
    pub sync_interval: Option<GoDuration>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: Option<bool>,
    pub skip_verify: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<ByteSize>,
    pub concurrency: Option<usize>,
    /// Azure Blob Storage (`abs`).
    pub account_name: Option<String>,
    pub account_key: Option<String>,
    pub sas_token: Option<String>,
    /// WebDAV (`webdav`).
    pub webdav_url: Option<String>,
    pub webdav_username: Option<String>,
    pub webdav_password: Option<String>,
    /// NATS (`nats`); `password` is shared with SFTP in Litestream's format.
    pub jwt: Option<String>,
    pub seed: Option<String>,
    pub creds: Option<String>,
    pub nkey: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub tls: Option<bool>,
    pub root_cas: Option<Vec<String>>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// SFTP (`sftp`); `password` is shared with NATS. `known-hosts-path` and
    /// `skip-host-key-check` are this library's (the official binary has neither).
    pub host: Option<String>,
    pub user: Option<String>,
    pub key_path: Option<String>,
    pub host_key: Option<String>,
    pub known_hosts_path: Option<String>,
    pub skip_host_key_check: Option<bool>,
    /// Encryption: Litestream 0.5 refuses it, and so do we.
    pub age: Option<IgnoredAny>,
}

/// `Some(s)` unless `s` is empty: Go treats an empty string as unset.
pub(crate) fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(String::from)
}

/// Deepest nesting of YAML flow collections (`[…]`, `{…}`) accepted. The YAML parser's work
/// grows with the square of the flow depth (100 000 levels take minutes), while a
/// `litestream.yml` needs two or three levels; the YAML deserializer refuses more than 128
/// levels anyway, so nothing that could load is refused here.
pub(crate) const MAX_FLOW_DEPTH: usize = 128;

/// The line (1-based) where `text` first nests flow collections deeper than `limit`, found
/// in one pass. Comments and quoted scalars are skipped; brackets inside plain scalars
/// (`a[1]`) are counted, which can only over-count by the few a real value holds.
pub(crate) fn flow_too_deep(text: &str, limit: usize) -> Option<usize> {
    let b = text.as_bytes();
    let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
    // Whether the previous byte lets a quote or a comment start here.
    let mut at_token_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'#' if at_token_start => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if at_token_start => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\n' => line += 1,
                        b'\\' if c == b'"' => i += 1,
                        q if q == c => {
                            // `''` inside a single-quoted scalar is an escaped quote.
                            if c == b'\'' && b.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at_token_start = matches!(
            b.get(i),
            Some(b' ' | b'\t' | b'\n' | b'\r' | b':' | b',' | b'[' | b'{' | b'-' | b'?')
        );
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flow_depth_counts_brackets_outside_quotes_and_comments() {
        assert_eq!(flow_too_deep("a: [[1]]\n", 2), None);
        assert_eq!(flow_too_deep("a: [[[1]]]\n", 2), Some(1));
        assert_eq!(flow_too_deep("a: 1\nb: {x: [{y: 1}]}\n", 2), Some(2));
        assert_eq!(flow_too_deep("a: \"[[[[\"\nb: '{{{{'\n", 1), None);
        assert_eq!(flow_too_deep("a: 'it''s [[[['\n", 1), None);
        assert_eq!(flow_too_deep("a: \"\\\"[[[[\"\n", 1), None);
        assert_eq!(flow_too_deep("# [[[[\na: 1 # {{{{\n", 1), None);
        assert_eq!(flow_too_deep("url: s3://b/x[1]/y[2]\n", 1), None);
        assert_eq!(flow_too_deep("a: b#[[\n", 1), Some(1));
        assert_eq!(flow_too_deep("a: \"\n[[[[\"\nb: [[x]]\n", 1), Some(3));
    }

    #[test]
    fn deep_nesting_is_found_in_linear_time() {
        // 1 000 000 levels: one pass over 2 MB, where the YAML parser would take hours.
        let n = 1_000_000;
        let doc = format!("ignored: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(flow_too_deep(&doc, MAX_FLOW_DEPTH), Some(1));
    }

    proptest! {
        /// Balanced flow text as deep as the limit is accepted, one level more is refused.
        #[test]
        fn the_limit_is_exact(depth in 1usize..200, map in any::<bool>()) {
            let (open, close) = if map { ("{a: ", "}") } else { ("[", "]") };
            let doc = format!("x: {}1{}\n", open.repeat(depth), close.repeat(depth));
            prop_assert_eq!(flow_too_deep(&doc, depth), None);
            prop_assert_eq!(flow_too_deep(&doc, depth - 1), Some(1));
        }
    }
}

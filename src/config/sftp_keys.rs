//! SFTP replicas (`sftp`), with Litestream 0.5's keys: `host` (`HOST[:PORT]`), `user`,
//! `password`, `key-path`, `host-key` (the server's public key line, as in `known_hosts`
//! without the host name), `path`; `sftp://USER[:PASSWORD]@HOST[:PORT]/path` URLs.
//!
//! Host-key checking goes further than the official binary, which skips it (with a warning)
//! when `host-key` is empty: here the server's key is then looked up in a `known_hosts` file
//! (`known-hosts-path`, default `~/.ssh/known_hosts`), and skipping the check takes an explicit
//! `skip-host-key-check: true`, logged when the connection opens.

use super::cloud::{GenericUrl, ReplicaKeysError};
use super::yaml::{non_empty, RawReplica};

/// The SSH port when `host` names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// `host-key`: exactly this public key (`ssh-ed25519 AAAA…`).
    Fixed(String),
    /// The server must be listed in this `known_hosts` file (`None`: `~/.ssh/known_hosts`).
    KnownHosts(Option<String>),
    /// `skip-host-key-check: true`: any key is accepted (logged as a warning at connect).
    Skip,
}

impl Default for HostKeyCheck {
    fn default() -> Self {
        HostKeyCheck::KnownHosts(None)
    }
}

/// An SFTP replica. Deliberately without a derived `Debug`: it holds a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SftpConfig {
    /// Host name or address, without the port.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// `key-path`: an OpenSSH private key file (unencrypted).
    pub key_path: Option<String>,
    pub host_key: HostKeyCheck,
    /// Directory of the replica on the server, as written (relative: to the login directory).
    pub path: String,
}

impl std::fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("path", &self.path)
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Splits `HOST[:PORT]` (or `[V6]:PORT`).
fn split_host_port(hostport: &str) -> Result<(String, u16), ReplicaKeysError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| ReplicaKeysError::SftpBracket {
                host: hostport.to_string(),
            })?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), parse_port(hostport, p)?)),
            None => Ok((h.to_string(), DEFAULT_SSH_PORT)),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), parse_port(hostport, p)?)),
        _ => Ok((hostport.to_string(), DEFAULT_SSH_PORT)),
    }
}

fn parse_port(hostport: &str, p: &str) -> Result<u16, ReplicaKeysError> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ReplicaKeysError::SftpPort {
            host: hostport.to_string(),
            port: p.to_string(),
        })
}

/// Resolves an `sftp` replica from its keys (`r`, then the top-level `g`) and optional URL;
/// the keys win over the URL's parts.
pub(crate) fn sftp(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
    path: Option<String>,
) -> Result<SftpConfig, ReplicaKeysError> {
    let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
    let mut host = pick(&r.host, &g.host);
    let mut user = pick(&r.user, &g.user);
    let mut password = pick(&r.password, &g.password);
    let mut path = path.unwrap_or_default();
    if let Some(u) = url {
        host = host.or(Some(u.host));
        user = user.or(u.user);
        password = password.or(u.password);
        path = u.path;
    }
    let Some(host) = host else {
        return Err(ReplicaKeysError::SftpHost);
    };
    let Some(user) = user else {
        return Err(ReplicaKeysError::SftpUser);
    };
    let (host, port) = split_host_port(&host)?;
    let host_key = match (
        pick(&r.host_key, &g.host_key),
        r.skip_host_key_check.or(g.skip_host_key_check),
    ) {
        (Some(_), Some(true)) => return Err(ReplicaKeysError::SftpHostKeyBoth),
        (Some(k), _) => HostKeyCheck::Fixed(k.trim().to_string()),
        (None, Some(true)) => HostKeyCheck::Skip,
        (None, _) => HostKeyCheck::KnownHosts(pick(&r.known_hosts_path, &g.known_hosts_path)),
    };
    let path = path.trim_end_matches('/').to_string();
    Ok(SftpConfig {
        host,
        port,
        user,
        password,
        key_path: pick(&r.key_path, &g.key_path),
        host_key,
        path: if path.is_empty() { ".".into() } else { path },
    })
}

/// `sftp://USER@HOST[:PORT]/path`, without the password.
pub(crate) fn sftp_url(c: &SftpConfig) -> String {
    let host = if c.host.contains(':') {
        format!("[{}]", c.host)
    } else {
        c.host.clone()
    };
    let port = if c.port == DEFAULT_SSH_PORT {
        String::new()
    } else {
        format!(":{}", c.port)
    };
    let user = super::url::percent_encode(&c.user, false);
    let path = super::url::percent_encode(c.path.trim_start_matches('/'), true);
    let sep = if c.path.starts_with('/') { "/" } else { "/~/" };
    format!("sftp://{user}@{host}{port}{sep}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::cloud::test_url as url;

    #[test]
    fn url_parts_like_the_official_binary() {
        let raw = RawReplica::default();
        let c = sftp(
            &raw,
            &raw,
            Some(url("sftp://me:s%40cret@10.0.0.5:2222/backups/app")),
            None,
        )
        .unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.as_deref()
            ),
            ("10.0.0.5", 2222, "me", Some("s@cret"))
        );
        assert_eq!(c.path, "/backups/app");
        assert_eq!(c.host_key, HostKeyCheck::KnownHosts(None));
        assert_eq!(sftp_url(&c), "sftp://me@10.0.0.5:2222/backups/app");
        assert!(!format!("{c:?}").contains("s@cret"));
    }

    #[test]
    fn keys_host_key_and_defaults() {
        let r = RawReplica {
            host: Some("backup.example".into()),
            user: Some("app".into()),
            key_path: Some("/k/id_ed25519".into()),
            host_key: Some("ssh-ed25519 AAAAC3 \n".into()),
            ..Default::default()
        };
        let c = sftp(&r, &RawReplica::default(), None, Some("db/app".into())).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("backup.example", 22));
        assert_eq!(c.host_key, HostKeyCheck::Fixed("ssh-ed25519 AAAAC3".into()));
        assert_eq!(c.path, "db/app");
        assert_eq!(sftp_url(&c), "sftp://app@backup.example/~/db/app");
        let skip = RawReplica {
            host: Some("[::1]:22022".into()),
            user: Some("app".into()),
            skip_host_key_check: Some(true),
            ..Default::default()
        };
        let c = sftp(&skip, &RawReplica::default(), None, None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("::1", 22022, ".")
        );
        assert_eq!(c.host_key, HostKeyCheck::Skip);
    }

    #[test]
    fn missing_or_conflicting_keys_are_errors() {
        let raw = RawReplica::default();
        assert!(sftp(&raw, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("`host`"));
        let r = RawReplica {
            host: Some("h".into()),
            ..Default::default()
        };
        assert!(sftp(&r, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("`user`"));
        let r = RawReplica {
            host: Some("h:port".into()),
            user: Some("u".into()),
            ..Default::default()
        };
        assert!(sftp(&r, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("not a port"));
        let r = RawReplica {
            host: Some("h".into()),
            user: Some("u".into()),
            host_key: Some("ssh-ed25519 AAAA".into()),
            skip_host_key_check: Some(true),
            ..Default::default()
        };
        assert!(sftp(&r, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("both set"));
    }
}

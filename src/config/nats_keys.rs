//! NATS JetStream object store replicas (`nats`), with Litestream 0.5's keys: `url`
//! (`nats://[USER:PASSWORD@]HOST[:PORT]/BUCKET`), `bucket`, `jwt` + `seed`, `creds`, `nkey`,
//! `username` + `password`, `token`, `tls`, `root-cas`, `client-cert` + `client-key`.
//!
//! Like the official binary, files live at the bucket root (`ltx/<level>/…`); `path` is not
//! used by this replica type.

use super::cloud::{GenericUrl, ReplicaKeysError};
use super::yaml::{non_empty, RawReplica};

/// Server when neither `url` names one: the NATS default.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// A NATS replica. Deliberately without a derived `Debug`: it holds secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://…`), without credentials or bucket.
    pub url: String,
    pub bucket: String,
    pub jwt: Option<String>,
    pub seed: Option<String>,
    /// Path of a `.creds` file (JWT and seed).
    pub creds: Option<String>,
    /// An nkey seed (`SU…`).
    pub nkey: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub tls: bool,
    pub root_cas: Vec<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("bucket", &self.bucket)
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("token", &set(&self.token))
            .field("jwt", &set(&self.jwt))
            .field("seed", &set(&self.seed))
            .field("nkey", &set(&self.nkey))
            .field("creds", &self.creds)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Resolves a `nats` replica from its keys (`r`, then the top-level `g`) and optional URL.
pub(crate) fn nats(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
) -> Result<NatsConfig, ReplicaKeysError> {
    let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
    let mut c = NatsConfig {
        url: DEFAULT_NATS_URL.to_string(),
        bucket: pick(&r.bucket, &g.bucket).unwrap_or_default(),
        jwt: pick(&r.jwt, &g.jwt),
        seed: pick(&r.seed, &g.seed),
        creds: pick(&r.creds, &g.creds),
        nkey: pick(&r.nkey, &g.nkey),
        username: pick(&r.username, &g.username),
        password: pick(&r.password, &g.password),
        token: pick(&r.token, &g.token),
        tls: r.tls.or(g.tls).unwrap_or(false),
        root_cas: r
            .root_cas
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| g.root_cas.clone())
            .unwrap_or_default(),
        client_cert: pick(&r.client_cert, &g.client_cert),
        client_key: pick(&r.client_key, &g.client_key),
    };
    if let Some(u) = url {
        c.url = format!("nats://{}", u.host);
        let bucket = u.path.trim_matches('/');
        if !bucket.is_empty() {
            c.bucket = bucket.to_string();
        }
        if c.username.is_none() && c.password.is_none() {
            c.username = u.user;
            c.password = u.password;
        }
    }
    if c.bucket.is_empty() {
        return Err(ReplicaKeysError::NatsBucket);
    }
    if c.client_cert.is_some() != c.client_key.is_some() {
        return Err(ReplicaKeysError::NatsClientPair);
    }
    Ok(c)
}

/// `nats://HOST:PORT/BUCKET`, without credentials.
pub(crate) fn nats_url(c: &NatsConfig) -> String {
    format!("{}/{}", super::url::redact(&c.url), c.bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::cloud::test_url as url;

    #[test]
    fn url_names_server_and_bucket() {
        let raw = RawReplica::default();
        let c = nats(&raw, &raw, Some(url("nats://me:pw@127.0.0.1:4333/backups"))).unwrap();
        assert_eq!(
            (c.url.as_str(), c.bucket.as_str()),
            ("nats://127.0.0.1:4333", "backups")
        );
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("me"), Some("pw"))
        );
        assert_eq!(nats_url(&c), "nats://127.0.0.1:4333/backups");
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn keys_and_defaults() {
        let r = RawReplica {
            bucket: Some("b".into()),
            token: Some("t0k".into()),
            tls: Some(true),
            root_cas: Some(vec!["/ca.pem".into()]),
            ..Default::default()
        };
        let c = nats(&r, &RawReplica::default(), None).unwrap();
        assert_eq!(c.url, DEFAULT_NATS_URL);
        assert!(c.tls && c.root_cas == vec!["/ca.pem".to_string()]);
        let raw = RawReplica::default();
        assert!(nats(&raw, &raw, None)
            .unwrap_err()
            .to_string()
            .contains("bucket"));
        let half = RawReplica {
            bucket: Some("b".into()),
            client_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(nats(&half, &raw, None)
            .unwrap_err()
            .to_string()
            .contains("client-key"));
    }
}

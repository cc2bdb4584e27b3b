//! The stores besides `file` and S3: Azure Blob Storage (`abs`), Google Cloud Storage (`gs`)
//! and WebDAV (`webdav`). Their YAML keys and URL forms follow Litestream 0.5:
//! - `abs://[ACCOUNT@]CONTAINER/path`, keys `account-name`, `account-key`, `sas-token`,
//!   `bucket` (the container), `path`, `endpoint`;
//! - `gs://BUCKET/path`, keys `bucket`, `path`;
//! - `webdav[s]://[USER[:PASSWORD]@]HOST[:PORT]/path`, keys `webdav-url`, `webdav-username`,
//!   `webdav-password`, `path`.
//!
//! With a `url`, the YAML keys win over the URL's parts (Litestream applies URL parts only to
//! keys left empty).

use thiserror::Error;

use super::url::{clean_key, percent_decode, UrlError};
use super::yaml::{non_empty, RawReplica};

/// A replica whose keys (and URL) do not name a usable store: something required is missing
/// or two keys contradict each other. Each message names the keys to set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ReplicaKeysError {
    #[error(
        "an abs replica needs `bucket` (the container) or `url: abs://[ACCOUNT@]CONTAINER/path`"
    )]
    AbsContainer,
    #[error("a gs replica needs `bucket` or `url: gs://BUCKET/path`")]
    GsBucket,
    #[error("a webdav replica needs `webdav-url` (or `url: webdav://USER:PASSWORD@HOST/path`)")]
    WebdavUrl,
    /// `url` is shown without user-info.
    #[error("`webdav-url` {url:?} must start with http:// or https://")]
    WebdavScheme { url: String },
    #[error("a nats replica needs `bucket` (or `url: nats://HOST:PORT/BUCKET`)")]
    NatsBucket,
    #[error("`client-cert` and `client-key` must both be set for mutual TLS")]
    NatsClientPair,
    #[error("an sftp replica needs `host` (or `url: sftp://USER@HOST[:PORT]/path`)")]
    SftpHost,
    #[error("an sftp replica needs `user` (or `url: sftp://USER@HOST/path`)")]
    SftpUser,
    #[error("sftp host {host:?}: missing ']'")]
    SftpBracket { host: String },
    #[error("sftp host {host:?}: {port:?} is not a port number")]
    SftpPort { host: String, port: String },
    #[error("`host-key` and `skip-host-key-check: true` are both set; keep one")]
    SftpHostKeyBoth,
    #[error("an oss replica needs `bucket` (or `url: oss://BUCKET/path`)")]
    OssBucket,
}

/// An Azure Blob Storage replica. Deliberately without a derived `Debug`: it holds secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AbsConfig {
    /// `account-name`, else the URL's user, else `AZURE_STORAGE_ACCOUNT` (read by the client).
    pub account_name: Option<String>,
    /// `account-key`, else `LITESTREAM_AZURE_ACCOUNT_KEY` / `AZURE_STORAGE_KEY` (client).
    pub account_key: Option<String>,
    /// `sas-token`, else `LITESTREAM_AZURE_SAS_TOKEN` (client).
    pub sas_token: Option<String>,
    /// The container.
    pub bucket: String,
    /// Blob name prefix without leading or trailing `/`.
    pub path: String,
    /// `endpoint` (`http://127.0.0.1:10000/devstoreaccount1` for Azurite); default
    /// `https://ACCOUNT.blob.core.windows.net`.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for AbsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsConfig")
            .field("account_name", &self.account_name)
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("sas_token", &self.sas_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A Google Cloud Storage replica (credentials come from the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GsConfig {
    pub bucket: String,
    /// Object name prefix without leading or trailing `/`.
    pub path: String,
}

/// A WebDAV replica. Deliberately without a derived `Debug`: it holds a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebdavConfig {
    /// `webdav-url`: the server (and collection) URL, `http://host:port[/dav]`, no trailing `/`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Collection path under `url`, without leading or trailing `/`.
    pub path: String,
}

impl std::fmt::Debug for WebdavConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebdavConfig")
            .field("url", &super::url::redact(&self.url))
            .field("username", &self.username)
            .field("path", &self.path)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parts of a `scheme://[user[:password]@]host[/path][?query]` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GenericUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    /// The path, percent-decoded, as written (leading `/` kept).
    pub path: String,
}

/// Parses a whole `scheme://…` URL (tests).
#[cfg(test)]
pub(crate) fn test_url(u: &str) -> GenericUrl {
    let (scheme, rest) = u.split_once("://").expect("scheme://");
    parse_generic(scheme, rest, u).expect("a valid URL")
}

/// `SCHEME://BUCKET[/path]` (gs, oss), the path percent-encoded.
pub(crate) fn bucket_url(scheme: &str, bucket: &str, path: &str) -> String {
    let mut out = format!("{scheme}://{bucket}");
    if !path.is_empty() {
        out.push('/');
        out.push_str(&super::url::percent_encode(path, true));
    }
    out
}

/// Parses the part after `scheme://`. `shown` is the URL without user-info, for messages.
pub(crate) fn parse_generic(scheme: &str, rest: &str, shown: &str) -> Result<GenericUrl, UrlError> {
    let rest = rest.split('#').next().unwrap_or_default();
    let before_query = rest.split('?').next().unwrap_or_default();
    let (authority, path) = match before_query.find('/') {
        Some(n) => before_query.split_at(n),
        None => (before_query, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let decode = |s: &str| {
        percent_decode(s, false).map_err(|source| UrlError::Escape {
            url: shown.to_string(),
            source,
        })
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((name, pass)) => (Some(decode(name)?), Some(decode(pass)?)),
            None => (Some(decode(u)?), None),
        },
        None => (None, None),
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost {
            url: shown.to_string(),
            scheme: scheme.to_string(),
            what: match scheme {
                "abs" => "container",
                "gs" => "bucket",
                "nats" => "server",
                _ => "host",
            },
        });
    }
    Ok(GenericUrl {
        scheme: scheme.to_string(),
        user: user.filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
        host: host.to_string(),
        path: decode(path)?,
    })
}

/// Resolves an `abs` replica from its keys (`r`, then the top-level `g`) and optional URL.
/// Err is a message for the replica as a whole.
pub(crate) fn abs(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
    path: Option<String>,
) -> Result<AbsConfig, ReplicaKeysError> {
    let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
    let mut c = AbsConfig {
        account_name: pick(&r.account_name, &g.account_name),
        account_key: pick(&r.account_key, &g.account_key),
        sas_token: pick(&r.sas_token, &g.sas_token),
        bucket: pick(&r.bucket, &g.bucket).unwrap_or_default(),
        path: path.unwrap_or_default(),
        endpoint: pick(&r.endpoint, &g.endpoint).map(|e| super::url::ensure_scheme(&e)),
    };
    if let Some(u) = url {
        if c.account_name.is_none() {
            c.account_name = u.user;
        }
        c.bucket = u.host;
        c.path = u.path;
    }
    c.path = clean_key(&c.path);
    if c.bucket.is_empty() {
        return Err(ReplicaKeysError::AbsContainer);
    }
    Ok(c)
}

/// Resolves a `gs` replica.
pub(crate) fn gs(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
    path: Option<String>,
) -> Result<GsConfig, ReplicaKeysError> {
    let mut c = GsConfig {
        bucket: non_empty(&r.bucket)
            .or_else(|| non_empty(&g.bucket))
            .unwrap_or_default(),
        path: path.unwrap_or_default(),
    };
    if let Some(u) = url {
        c.bucket = u.host;
        c.path = u.path;
    }
    c.path = clean_key(&c.path);
    if c.bucket.is_empty() {
        return Err(ReplicaKeysError::GsBucket);
    }
    Ok(c)
}

/// Resolves a `webdav` replica: `webdav-url` or the URL's host (`webdavs` → https), with the
/// keys winning over the URL's user and password.
pub(crate) fn webdav(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
    path: Option<String>,
) -> Result<WebdavConfig, ReplicaKeysError> {
    let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
    let mut c = WebdavConfig {
        url: pick(&r.webdav_url, &g.webdav_url).unwrap_or_default(),
        username: pick(&r.webdav_username, &g.webdav_username),
        password: pick(&r.webdav_password, &g.webdav_password),
        path: path.unwrap_or_default(),
    };
    if let Some(u) = url {
        if c.url.is_empty() {
            let scheme = if u.scheme == "webdavs" {
                "https"
            } else {
                "http"
            };
            c.url = format!("{scheme}://{}", u.host);
        }
        if c.username.is_none() {
            c.username = u.user;
        }
        if c.password.is_none() {
            c.password = u.password;
        }
        c.path = u.path;
    }
    c.url = c.url.trim_end_matches('/').to_string();
    c.path = clean_key(&c.path);
    if c.url.is_empty() {
        return Err(ReplicaKeysError::WebdavUrl);
    }
    if !c.url.starts_with("http://") && !c.url.starts_with("https://") {
        return Err(ReplicaKeysError::WebdavScheme {
            url: super::url::redact(&c.url),
        });
    }
    Ok(c)
}

/// `webdav[s]://HOST[/collection]/path` for `c`, without user or password.
pub(crate) fn webdav_url(c: &WebdavConfig) -> String {
    let redacted = super::url::redact(&c.url);
    let mut out = match redacted.split_once("://") {
        Some(("https", rest)) => format!("webdavs://{rest}"),
        Some((_, rest)) => format!("webdav://{rest}"),
        None => redacted.clone(),
    };
    if !c.path.is_empty() {
        out.push('/');
        out.push_str(&super::url::percent_encode(&c.path, true));
    }
    out
}

/// `abs://[ACCOUNT@]CONTAINER/path` or `gs://BUCKET/path`, without secrets.
pub(crate) fn abs_url(c: &AbsConfig) -> String {
    let mut out = String::from("abs://");
    if let Some(a) = &c.account_name {
        out.push_str(&super::url::percent_encode(a, false));
        out.push('@');
    }
    out.push_str(&c.bucket);
    if !c.path.is_empty() {
        out.push('/');
        out.push_str(&super::url::percent_encode(&c.path, true));
    }
    out
}

pub(crate) fn gs_url(c: &GsConfig) -> String {
    bucket_url("gs", &c.bucket, &c.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_url as url;

    #[test]
    fn abs_url_parts() {
        let raw = RawReplica::default();
        let c = abs(&raw, &raw, Some(url("abs://acct@box/a/b/")), None).unwrap();
        assert_eq!(
            (
                c.account_name.as_deref(),
                c.bucket.as_str(),
                c.path.as_str()
            ),
            (Some("acct"), "box", "a/b")
        );
        assert_eq!(abs_url(&c), "abs://acct@box/a/b");
        let c = abs(&raw, &raw, Some(url("abs://box")), None).unwrap();
        assert_eq!((c.account_name, c.path.as_str()), (None, ""));
    }

    #[test]
    fn abs_keys_win_over_the_url_user_and_inherit_globals() {
        let r = RawReplica {
            account_name: Some("fromkey".into()),
            ..Default::default()
        };
        let g = RawReplica {
            account_key: Some("k".into()),
            endpoint: Some("blob.example.net/acct".into()),
            ..Default::default()
        };
        let c = abs(&r, &g, Some(url("abs://user@box/p")), None).unwrap();
        assert_eq!(c.account_name.as_deref(), Some("fromkey"));
        assert_eq!(c.account_key.as_deref(), Some("k"));
        assert_eq!(c.endpoint.as_deref(), Some("https://blob.example.net/acct"));
        assert!(!format!("{c:?}").contains("\"k\""));
    }

    #[test]
    fn missing_container_or_bucket_is_an_error() {
        let raw = RawReplica::default();
        assert!(abs(&raw, &raw, None, Some("p".into()))
            .unwrap_err()
            .to_string()
            .contains("bucket"));
        assert!(gs(&raw, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("bucket"));
        assert!(parse_generic("gs", "", "gs://").is_err());
    }

    #[test]
    fn webdav_url_and_keys() {
        let raw = RawReplica::default();
        let u = url("webdavs://me:s%40cret@dav.example:8443/backups/app");
        let c = webdav(&raw, &raw, Some(u), None).unwrap();
        assert_eq!(c.url, "https://dav.example:8443");
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("me"), Some("s@cret"))
        );
        assert_eq!(c.path, "backups/app");
        assert_eq!(webdav_url(&c), "webdavs://dav.example:8443/backups/app");
        assert!(!format!("{c:?}").contains("s@cret"));
        let r = RawReplica {
            webdav_url: Some("http://127.0.0.1:8080/dav/".into()),
            webdav_password: Some("other".into()),
            ..Default::default()
        };
        let c = webdav(&r, &raw, None, Some("/x/".into())).unwrap();
        assert_eq!(
            (c.url.as_str(), c.path.as_str()),
            ("http://127.0.0.1:8080/dav", "x")
        );
        let err = webdav(&raw, &raw, None, Some("p".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("webdav-url"), "{err}");
    }

    #[test]
    fn gs_url_parts() {
        let raw = RawReplica::default();
        let c = gs(&raw, &raw, Some(url("gs://bkt/x/y.db")), None).unwrap();
        assert_eq!((c.bucket.as_str(), c.path.as_str()), ("bkt", "x/y.db"));
        assert_eq!(gs_url(&c), "gs://bkt/x/y.db");
    }
}

//! Alibaba Cloud OSS replicas (`oss`), with Litestream 0.5's keys: `bucket`, `region` (default
//! `cn-hangzhou`), `path`, `endpoint`, `access-key-id`, `secret-access-key`; URLs
//! `oss://BUCKET[.oss-REGION[-internal].aliyuncs.com]/path`. The keys win over the URL's parts.

use super::cloud::{GenericUrl, ReplicaKeysError};
use super::yaml::{non_empty, RawReplica};

/// The region when neither `region` nor the URL's host names one (the official binary's).
pub const DEFAULT_OSS_REGION: &str = "cn-hangzhou";

/// An OSS replica. Deliberately without a derived `Debug`: it holds a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OssConfig {
    pub bucket: String,
    pub region: String,
    /// Key prefix without leading or trailing `/`.
    pub path: String,
    /// `endpoint` with a scheme; `None`: `https://oss-REGION.aliyuncs.com`.
    pub endpoint: Option<String>,
    /// `access-key-id` / `secret-access-key`; else `OSS_ACCESS_KEY_ID` /
    /// `OSS_ACCESS_KEY_SECRET` (read by the client).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for OssConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OssConfig")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path", &self.path)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(super::url::redact),
            )
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `BUCKET.oss-REGION[-internal].aliyuncs.com`, `oss-REGION.aliyuncs.com` or a plain bucket
/// name: (bucket, region), as the official `ParseHost`.
fn parse_host(host: &str) -> (String, Option<String>) {
    if let Some(rest) = host.strip_suffix(".aliyuncs.com") {
        let (bucket, service) = match rest.rsplit_once('.') {
            Some((b, s)) => (b, s),
            None => ("", rest),
        };
        if let Some(region) = service.strip_prefix("oss-") {
            let region = region.strip_suffix("-internal").unwrap_or(region);
            if !bucket.contains('.') && !region.is_empty() {
                return (bucket.to_string(), Some(region.to_string()));
            }
        }
    }
    (host.to_string(), None)
}

/// Resolves an `oss` replica from its keys (`r`, then the top-level `g`) and optional URL.
pub(crate) fn oss(
    r: &RawReplica,
    g: &RawReplica,
    url: Option<GenericUrl>,
    path: Option<String>,
) -> Result<OssConfig, ReplicaKeysError> {
    let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
    let mut bucket = pick(&r.bucket, &g.bucket);
    let mut region = pick(&r.region, &g.region);
    let mut path = path.unwrap_or_default();
    if let Some(u) = url {
        let (b, reg) = parse_host(&u.host);
        bucket = bucket.or(Some(b).filter(|b| !b.is_empty()));
        region = region.or(reg);
        if path.is_empty() {
            path = u.path;
        }
    }
    let Some(bucket) = bucket else {
        return Err(ReplicaKeysError::OssBucket);
    };
    Ok(OssConfig {
        bucket,
        region: region.unwrap_or_else(|| DEFAULT_OSS_REGION.to_string()),
        path: super::url::clean_key(&path),
        endpoint: pick(&r.endpoint, &g.endpoint).map(|e| super::url::ensure_scheme(&e)),
        access_key_id: pick(&r.access_key_id, &g.access_key_id),
        secret_access_key: pick(&r.secret_access_key, &g.secret_access_key),
    })
}

/// `oss://BUCKET/path`, without credentials.
pub(crate) fn oss_url(c: &OssConfig) -> String {
    super::cloud::bucket_url("oss", &c.bucket, &c.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::cloud::test_url as url;

    #[test]
    fn hosts_like_the_official_parse_host() {
        let cases = [
            ("mybucket", ("mybucket", None)),
            (
                "mybucket.oss-cn-shanghai.aliyuncs.com",
                ("mybucket", Some("cn-shanghai")),
            ),
            (
                "mybucket.oss-cn-beijing-internal.aliyuncs.com",
                ("mybucket", Some("cn-beijing")),
            ),
            ("oss-us-west-1.aliyuncs.com", ("", Some("us-west-1"))),
        ];
        for (host, (bucket, region)) in cases {
            let (b, r) = parse_host(host);
            assert_eq!((b.as_str(), r.as_deref()), (bucket, region), "{host}");
        }
    }

    #[test]
    fn url_keys_and_defaults() {
        let raw = RawReplica::default();
        let c = oss(
            &raw,
            &raw,
            Some(url("oss://bkt.oss-cn-shenzhen.aliyuncs.com/a/b/")),
            None,
        )
        .unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.region.as_str(), c.path.as_str()),
            ("bkt", "cn-shenzhen", "a/b")
        );
        assert_eq!(oss_url(&c), "oss://bkt/a/b");
        let r = RawReplica {
            bucket: Some("b2".into()),
            endpoint: Some("127.0.0.1:9000".into()),
            secret_access_key: Some("s3cr3t".into()),
            ..Default::default()
        };
        let c = oss(&r, &raw, None, Some("/p/".into())).unwrap();
        assert_eq!(
            (c.region.as_str(), c.path.as_str(), c.endpoint.as_deref()),
            (DEFAULT_OSS_REGION, "p", Some("http://127.0.0.1:9000"))
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(oss(&raw, &raw, None, None)
            .unwrap_err()
            .to_string()
            .contains("`bucket`"));
    }
}

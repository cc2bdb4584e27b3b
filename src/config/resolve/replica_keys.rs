//! Resolving one replica: its keys, inherited top-level keys and URL merged into a
//! [`Backend`], per replica type; and a backend from a URL alone.

use super::*;

impl Resolver<'_> {
    pub(super) fn replica(
        &self,
        r: &RawReplica,
        p: &KeyPath,
        db: &str,
    ) -> Result<ReplicaConfig, ConfigError> {
        let g = &self.global;
        if r.age.is_some() {
            return Err(self.err(&p.key("age"), AGE_REFUSED));
        }
        let url = non_empty(&r.url);
        let path = non_empty(&r.path);
        if url.is_some() && path.is_some() {
            return Err(self.err(
                p,
                "`url` and `path` are both set; put the whole location in \
                `url`, or use `type` and `path` without `url`",
            ));
        }
        if url.is_some() && non_empty(&r.bucket).is_some() {
            return Err(self.err(
                p,
                "`url` and `bucket` are both set; put the bucket in the url \
                (s3://BUCKET/path) or drop `url`",
            ));
        }
        if let Some(pth) = &path {
            if replica_url::scheme(pth).is_some() {
                return Err(self.err(
                    &p.key("path"),
                    format!(
                        "{:?} is a URL; use the `url` key for URLs",
                        replica_url::redact(pth)
                    ),
                ));
            }
        }
        let parts = match &url {
            Some(u) => Some(
                replica_url::parse(u)
                    .map_err(|e| self.err(&p.key("url"), format!("database {db}: {e}")))?,
            ),
            None => None,
        };
        let kind = match (&parts, non_empty(&r.kind)) {
            (Some(UrlParts::File(_)), _) => "file".to_string(),
            (Some(UrlParts::S3(_)), _) => "s3".to_string(),
            (Some(UrlParts::Generic(g)), _) if g.scheme == "webdavs" => "webdav".to_string(),
            (Some(UrlParts::Generic(g)), _) => g.scheme.clone(),
            (None, Some(k)) => k,
            (None, None) => "file".to_string(),
        };
        let sync_interval = dur(&r.sync_interval)
            .or(dur(&g.sync_interval))
            .unwrap_or(DEFAULT_SYNC_INTERVAL);
        let backend = match kind.as_str() {
            "file" => {
                let dir = match (parts, path) {
                    (Some(UrlParts::File(dir)), _) => dir,
                    (_, Some(pth)) => self.path(&pth, &p.key("path"))?,
                    _ => {
                        return Err(self.err(
                            p,
                            format!(
                                "database {db}: a file replica needs `path` (or `url: \
                             file:///absolute/path`)"
                            ),
                        ))
                    }
                };
                Backend::File { path: dir }
            }
            "s3" => {
                let from_url = match parts {
                    Some(UrlParts::S3(s)) => Some(s),
                    _ => None,
                };
                Backend::S3(self.s3(r, from_url, path, p, db)?)
            }
            "nats" => {
                let from_url = match parts {
                    Some(UrlParts::Generic(u)) => Some(u),
                    _ => None,
                };
                Backend::Nats(
                    crate::config::nats_keys::nats(r, g, from_url)
                        .map_err(|e| self.err(p, format!("database {db}: {e}")))?,
                )
            }
            "oss" => {
                let from_url = match parts {
                    Some(UrlParts::Generic(u)) => Some(u),
                    _ => None,
                };
                Backend::Oss(
                    crate::config::oss_keys::oss(r, g, from_url, path)
                        .map_err(|e| self.err(p, format!("database {db}: {e}")))?,
                )
            }
            "sftp" => {
                let from_url = match parts {
                    Some(UrlParts::Generic(u)) => Some(u),
                    _ => None,
                };
                Backend::Sftp(
                    crate::config::sftp_keys::sftp(r, g, from_url, path)
                        .map_err(|e| self.err(p, format!("database {db}: {e}")))?,
                )
            }
            "abs" | "gs" | "webdav" => {
                let from_url = match parts {
                    Some(UrlParts::Generic(u)) => Some(u),
                    _ => None,
                };
                let made = match kind.as_str() {
                    "abs" => crate::config::cloud::abs(r, g, from_url, path).map(Backend::Abs),
                    "gs" => crate::config::cloud::gs(r, g, from_url, path).map(Backend::Gs),
                    _ => crate::config::cloud::webdav(r, g, from_url, path).map(Backend::Webdav),
                };
                made.map_err(|e| self.err(p, format!("database {db}: {e}")))?
            }
            k => {
                return Err(self.err(
                    &p.key("type"),
                    format!(
                        "database {db}: unknown replica type {k:?} (supported: {})",
                        replica_url::SUPPORTED
                    ),
                ))
            }
        };
        Ok(ReplicaConfig {
            backend,
            sync_interval,
        })
    }

    fn s3(
        &self,
        r: &RawReplica,
        u: Option<replica_url::S3UrlParts>,
        path: Option<String>,
        p: &KeyPath,
        db: &str,
    ) -> Result<S3Config, ConfigError> {
        let g = &self.global;
        let pick = |a: &Option<String>, b: &Option<String>| non_empty(a).or_else(|| non_empty(b));
        let has_url = u.is_some();
        let u = u.unwrap_or_default();
        // With a url, the bucket comes from it (a top-level `bucket` is only a default).
        let bucket = if has_url {
            Some(u.bucket.clone())
        } else {
            pick(&r.bucket, &g.bucket)
        };
        let Some(bucket) = bucket.filter(|b| !b.is_empty()) else {
            return Err(self.err(
                p,
                format!("database {db}: an s3 replica needs `bucket` (or `url: s3://BUCKET/path`)"),
            ));
        };
        let endpoint = pick(&r.endpoint, &g.endpoint).map(|e| replica_url::ensure_scheme(&e));
        let explicit_endpoint = endpoint.is_some();
        let endpoint = endpoint.or(u.endpoint);
        let force_path_style = r
            .force_path_style
            .or(g.force_path_style)
            .or(u.force_path_style)
            .unwrap_or(explicit_endpoint || u.implied_path_style);
        let skip_verify = r.skip_verify.unwrap_or(false) || g.skip_verify.unwrap_or(false);
        let concurrency = r.concurrency.or(g.concurrency);
        if concurrency == Some(0) {
            return Err(self.err(&p.key("concurrency"), "must be greater than 0"));
        }
        Ok(S3Config {
            bucket,
            path: replica_url::clean_key(&path.unwrap_or(u.path)),
            region: pick(&r.region, &g.region).or(u.region),
            endpoint,
            force_path_style,
            skip_verify: u.skip_verify.unwrap_or(skip_verify),
            access_key_id: pick(&r.access_key_id, &g.access_key_id),
            secret_access_key: pick(&r.secret_access_key, &g.secret_access_key),
            part_size: r.part_size.or(g.part_size).map(|s| s.0).or(u.part_size),
            concurrency: concurrency.or(u.concurrency),
            sign_payload: r.sign_payload.or(g.sign_payload).or(u.sign_payload),
            require_content_md5: r
                .require_content_md5
                .or(g.require_content_md5)
                .or(u.require_content_md5),
            storage_class: pick(&r.storage_class, &g.storage_class).or(u.storage_class),
        })
    }
}

pub(super) const AGE_REFUSED: &str =
    "age encryption is not supported (Litestream 0.5 refuses it too): \
    remove the `age` key, or use Litestream v0.3.x if you need encrypted replicas";

/// A backend from a URL alone (zero-config `?replica=URL`).
pub(crate) fn backend_from_url(parts: UrlParts) -> Result<Backend, ConfigError> {
    let none = RawReplica::default();
    Ok(match parts {
        UrlParts::Generic(u) if u.scheme == "abs" => Backend::Abs(
            crate::config::cloud::abs(&none, &none, Some(u), None)
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::Generic(u) if u.scheme == "nats" => Backend::Nats(
            crate::config::nats_keys::nats(&none, &none, Some(u))
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::Generic(u) if u.scheme == "oss" => Backend::Oss(
            crate::config::oss_keys::oss(&none, &none, Some(u), None)
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::Generic(u) if u.scheme == "sftp" => Backend::Sftp(
            crate::config::sftp_keys::sftp(&none, &none, Some(u), None)
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::Generic(u) if u.scheme.starts_with("webdav") => Backend::Webdav(
            crate::config::cloud::webdav(&none, &none, Some(u), None)
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::Generic(u) => Backend::Gs(
            crate::config::cloud::gs(&none, &none, Some(u), None)
                .map_err(|e| ConfigError::value("", e.to_string()))?,
        ),
        UrlParts::File(path) => Backend::File { path },
        UrlParts::S3(u) => Backend::S3(S3Config {
            force_path_style: u.force_path_style.unwrap_or(u.implied_path_style),
            skip_verify: u.skip_verify.unwrap_or(false),
            bucket: u.bucket,
            path: u.path,
            region: u.region,
            endpoint: u.endpoint,
            access_key_id: None,
            secret_access_key: None,
            part_size: u.part_size,
            concurrency: u.concurrency,
            sign_payload: u.sign_payload,
            require_content_md5: u.require_content_md5,
            storage_class: u.storage_class,
        }),
    })
}

/// Two replica locations that are the same place.
pub(super) fn same_replica(a: &crate::config::Backend, b: &crate::config::Backend) -> bool {
    use crate::config::Backend::*;
    match (a, b) {
        (File { path: x }, File { path: y }) => x == y,
        (S3(x), S3(y)) => {
            x.bucket == y.bucket
                && x.path.trim_matches('/') == y.path.trim_matches('/')
                && x.endpoint == y.endpoint
        }
        _ => false,
    }
}

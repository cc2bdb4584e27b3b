//! The `oss` backend: Alibaba Cloud OSS through its S3-compatible API (the `s3` backend's
//! client, AWS Signature V4), laid out as the official binary lays it out with its native
//! client: `<path>/<level as %04x>/<min>-<max>.ltx` with user metadata `litestream-timestamp`
//! (which OSS keeps as `x-oss-meta-litestream-timestamp`).
//!
//! Endpoint: `endpoint`, else `https://oss-REGION.aliyuncs.com` with the bucket in the host
//! name (OSS refuses path-style requests); another endpoint (a test server) is addressed
//! path-style. Credentials: `access-key-id` / `secret-access-key`, else `OSS_ACCESS_KEY_ID` /
//! `OSS_ACCESS_KEY_SECRET` (and `OSS_SESSION_TOKEN`), as the official client reads them; without
//! either every request fails with a message saying what to set.

use std::io::Read;
use std::path::Path;

use super::{LtxFileInfo, ReplicaClient, ReplicaError, S3Replica, VersionedObject, WriteCondition};
use crate::config::{OssConfig, S3Config};
use crate::TxId;

/// An OSS replica: the S3 client configured for OSS, or why it cannot be.
pub(crate) struct OssReplica {
    cfg: OssConfig,
    inner: Result<S3Replica, NoCredentials>,
}

/// Neither the keys nor the environment give OSS credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no OSS credentials: set `access-key-id` and `secret-access-key`, or OSS_ACCESS_KEY_ID and \
     OSS_ACCESS_KEY_SECRET"
)]
pub(crate) struct NoCredentials;

/// Whether `endpoint` is an Alibaba Cloud OSS host (virtual-hosted addressing only).
fn is_aliyun(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host.ends_with(".aliyuncs.com")
}

/// The S3 configuration that reaches `cfg` through OSS's S3-compatible API, with credentials
/// from `env` when the keys give none.
fn s3_config(
    cfg: &OssConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Config, NoCredentials> {
    let endpoint = cfg
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://oss-{}.aliyuncs.com", cfg.region));
    let (id, secret) = match (&cfg.access_key_id, &cfg.secret_access_key) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => match (env("OSS_ACCESS_KEY_ID"), env("OSS_ACCESS_KEY_SECRET")) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => (id, secret),
            _ => return Err(NoCredentials),
        },
    };
    Ok(S3Config {
        bucket: cfg.bucket.clone(),
        path: cfg.path.clone(),
        region: Some(cfg.region.clone()),
        force_path_style: !is_aliyun(&endpoint),
        endpoint: Some(endpoint),
        access_key_id: Some(id),
        secret_access_key: Some(secret),
        ..S3Config::default()
    })
}

impl OssReplica {
    /// A replica for `cfg`, credentials resolved against the process environment. Makes no
    /// request.
    pub(crate) fn new(cfg: &OssConfig) -> OssReplica {
        let inner = s3_config(cfg, &|k| std::env::var(k).ok()).map(|c| S3Replica::new(&c));
        OssReplica {
            cfg: cfg.clone(),
            inner,
        }
    }

    fn s3(&self) -> Result<&S3Replica, ReplicaError> {
        self.inner.as_ref().map_err(|reason| ReplicaError::Fatal {
            key: self.describe(),
            reason: reason.to_string(),
        })
    }
}

impl ReplicaClient for OssReplica {
    fn kind(&self) -> &'static str {
        "oss"
    }

    fn describe(&self) -> String {
        crate::config::Backend::Oss(self.cfg.clone()).url()
    }

    fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        match &self.inner {
            Ok(s3) => s3.key(level, min, max),
            Err(_) => format!(
                "{}/{level:04x}/{}",
                self.describe(),
                crate::ltx::format_file_name(min, max)
            ),
        }
    }

    fn list(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        self.s3()?.list(level)
    }

    fn open(&self, level: u8, min: TxId, max: TxId) -> Result<Box<dyn Read + Send>, ReplicaError> {
        self.s3()?.open(level, min, max)
    }

    fn put(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        timestamp_ms: i64,
    ) -> Result<(), ReplicaError> {
        self.s3()?.put(level, min, max, src, timestamp_ms)
    }

    fn delete(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        self.s3()?.delete(files)
    }

    fn resolve_timestamps(&self, files: &mut [LtxFileInfo]) -> Result<(), ReplicaError> {
        self.s3()?.resolve_timestamps(files)
    }

    fn read_object(&self, name: &str) -> Result<VersionedObject, ReplicaError> {
        self.s3()?.read_object(name)
    }

    fn write_object(
        &self,
        name: &str,
        data: &[u8],
        cond: WriteCondition,
    ) -> Result<String, ReplicaError> {
        self.s3()?.write_object(name, data, cond)
    }

    #[cfg(test)]
    fn delete_object(&self, name: &str) -> Result<(), ReplicaError> {
        self.s3()?.delete_object(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: Option<&str>) -> OssConfig {
        OssConfig {
            bucket: "bkt".into(),
            region: "cn-shanghai".into(),
            path: "db".into(),
            endpoint: endpoint.map(String::from),
            access_key_id: None,
            secret_access_key: None,
        }
    }

    #[test]
    fn aliyun_endpoints_are_virtual_hosted_others_path_style() {
        let env = |k: &str| match k {
            "OSS_ACCESS_KEY_ID" => Some("id".to_string()),
            "OSS_ACCESS_KEY_SECRET" => Some("secret".to_string()),
            _ => None,
        };
        let c = s3_config(&cfg(None), &env).unwrap();
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://oss-cn-shanghai.aliyuncs.com")
        );
        assert!(!c.force_path_style);
        assert_eq!(c.access_key_id.as_deref(), Some("id"));
        let c = s3_config(&cfg(Some("http://127.0.0.1:9000")), &env).unwrap();
        assert!(c.force_path_style);
    }

    /// The S3-compatible mode against moto (no OSS emulator exists): the conformance suite,
    /// and the official binary's key layout.
    #[test]
    fn conformance_suite_through_the_s3_compatible_api() {
        let endpoint = crate::replica::s3::test_server::endpoint();
        let c = OssConfig {
            bucket: format!("oss-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff),
            // moto creates buckets without a location constraint only in its default region.
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            ..cfg(Some(endpoint))
        };
        let r = OssReplica::new(&c);
        let s3 = r.s3().unwrap();
        s3.create_bucket().expect("create bucket");
        crate::replica::conformance::run_all(&r, &crate::replica::s3::test_server::plant(s3));
        assert_eq!(
            s3.object_key(1, 1, 2),
            "db/0001/0000000000000001-0000000000000002.ltx"
        );
        assert_eq!(r.describe(), format!("oss://{}/db", c.bucket));
    }

    #[test]
    fn missing_credentials_are_a_fatal_error_saying_what_to_set() {
        let r = OssReplica {
            cfg: cfg(None),
            inner: s3_config(&cfg(None), &|_| None).map(|c| S3Replica::new(&c)),
        };
        let err = r.list(0).unwrap_err();
        assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
        assert!(err.to_string().contains("OSS_ACCESS_KEY_ID"), "{err}");
    }
}

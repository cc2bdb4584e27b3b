//! The replica configuration turned into an aws-sdk-s3 client: credentials in Litestream's order,
//! endpoint and path style, checksums and timeouts that S3-compatible stores accept.

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, SharedHttpClient,
};

use crate::config::S3Config;

/// Region used when neither the configuration nor `AWS_REGION`/`AWS_DEFAULT_REGION` names one:
/// what S3-compatible stores expect, and AWS's default.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Litestream's default part size, and S3's minimum for every part but the last.
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3 refuses smaller parts (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts of one multipart upload in flight: Litestream's default `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 5;

/// Timeouts and retries of the client. Defaults come from the constants below; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// TCP + TLS handshake. A healthy store answers in well under a second; 10 s tolerates a
    /// slow link and still notices a dead endpoint long before the uploader's longest backoff.
    pub connect_timeout: Duration,
    /// One attempt of a request without a large body (LIST, HEAD, GET headers, DELETE, small
    /// objects). S3's own slow answers stay below 10 s; a stalled connection is given up.
    pub attempt_timeout: Duration,
    /// Lowest upload rate tolerated: a PUT or part of `n` bytes may take
    /// `attempt_timeout + n / min_upload_rate` before the attempt is abandoned and retried.
    pub min_upload_rate: u64,
    /// Longest wait for the next chunk of a downloaded body before the read fails.
    pub body_chunk_timeout: Duration,
    /// Attempts per request inside the SDK (the uploader retries again on its own schedule).
    pub max_attempts: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: CONNECT_TIMEOUT,
            attempt_timeout: ATTEMPT_TIMEOUT,
            min_upload_rate: MIN_UPLOAD_RATE,
            body_chunk_timeout: BODY_CHUNK_TIMEOUT,
            max_attempts: SDK_MAX_ATTEMPTS,
        }
    }
}

/// See [`Tuning::connect_timeout`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`Tuning::attempt_timeout`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// See [`Tuning::min_upload_rate`]: 128 KiB/s, far below any link a replica is useful on.
const MIN_UPLOAD_RATE: u64 = 128 * 1024;
/// See [`Tuning::body_chunk_timeout`]: the same patience as for a whole small request.
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// The SDK's standard mode default: one retry beyond it rarely helps, and the uploader's own
/// backoff takes over.
const SDK_MAX_ATTEMPTS: u32 = 3;

/// Where the credentials come from, in Litestream's order.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `access-key-id`/`secret-access-key` of the replica or the top level of the config.
    Config { id: String, secret: String },
    /// `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY`.
    LitestreamEnv { id: String, secret: String },
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`).
    AwsEnv {
        id: String,
        secret: String,
        token: Option<String>,
    },
    /// The SDK's default chain: profile files, web identity, ECS, EC2 instance role (IMDS).
    DefaultChain,
}

impl CredentialSource {
    /// For logs: where the credentials come from, never their values.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialSource::Config { .. } => "configuration",
            CredentialSource::LitestreamEnv { .. } => "LITESTREAM_ACCESS_KEY_ID",
            CredentialSource::AwsEnv { .. } => "AWS_ACCESS_KEY_ID",
            CredentialSource::DefaultChain => "AWS default chain",
        }
    }
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialSource({})", self.name())
    }
}

/// Everything needed to build the client, resolved from the configuration and the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bucket: String,
    /// Key prefix of the replica without trailing `/` (`.` for the bucket root, as official
    /// Litestream writes a bucket-root URL).
    pub prefix: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub part_size: u64,
    pub concurrency: usize,
    /// Sign the payload's SHA-256 (Litestream's `sign-payload`, default on); off sends
    /// `UNSIGNED-PAYLOAD`.
    pub sign_payload: bool,
    pub credentials: CredentialSource,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl Settings {
    /// Resolves `cfg` with `env` (the process environment in production).
    pub fn resolve(cfg: &S3Config, env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let var = |k: &str| non_empty(env(k));
        let credentials = match (
            non_empty(cfg.access_key_id.clone()),
            non_empty(cfg.secret_access_key.clone()),
        ) {
            (Some(id), Some(secret)) => CredentialSource::Config { id, secret },
            _ => match (
                var("LITESTREAM_ACCESS_KEY_ID"),
                var("LITESTREAM_SECRET_ACCESS_KEY"),
            ) {
                (Some(id), Some(secret)) => CredentialSource::LitestreamEnv { id, secret },
                _ => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => CredentialSource::AwsEnv {
                        id,
                        secret,
                        token: var("AWS_SESSION_TOKEN"),
                    },
                    _ => CredentialSource::DefaultChain,
                },
            },
        };
        let (endpoint, force_path_style) = match &cfg.endpoint {
            Some(e) => (Some(e.clone()), cfg.force_path_style),
            // Litestream: LITESTREAM_S3_ENDPOINT applies to replicas without an endpoint.
            None => match var("LITESTREAM_S3_ENDPOINT") {
                Some(e) => (Some(crate::config::ensure_endpoint_scheme(&e)), true),
                None => (None, cfg.force_path_style),
            },
        };
        let region = non_empty(cfg.region.clone())
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let part_size = cfg.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if part_size < MIN_PART_SIZE {
            tracing::warn!(
                part_size,
                min = MIN_PART_SIZE,
                "s3 part-size is below S3's minimum; using the minimum"
            );
        }
        Settings {
            bucket: cfg.bucket.clone(),
            prefix: if cfg.path.is_empty() {
                ".".to_string()
            } else {
                cfg.path.clone()
            },
            region,
            endpoint,
            force_path_style,
            skip_verify: cfg.skip_verify,
            part_size: part_size.max(MIN_PART_SIZE),
            concurrency: cfg.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
            sign_payload: cfg.sign_payload.unwrap_or(true),
            credentials,
        }
    }
}

/// The HTTP client: hyper 1 + rustls with ring (one TLS stack, native roots), or one that does
/// not verify certificates when `skip-verify` is set.
fn http_client(skip_verify: bool) -> SharedHttpClient {
    if skip_verify {
        return super::insecure::http_client();
    }
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Timeouts of a request that carries `body_len` bytes.
pub fn timeouts(t: &Tuning, body_len: u64) -> TimeoutConfig {
    let transfer = Duration::from_secs(body_len / t.min_upload_rate.max(1));
    TimeoutConfig::builder()
        .connect_timeout(t.connect_timeout)
        .operation_attempt_timeout(t.attempt_timeout + transfer)
        .build()
}

/// What a client is built from ([`build_client`] reads nothing else): replicas that agree on
/// it can share one client whatever their bucket and prefix.
#[derive(PartialEq, Eq)]
struct ClientKey {
    region: String,
    endpoint: Option<String>,
    force_path_style: bool,
    skip_verify: bool,
    credentials: CredentialSource,
    tuning: Tuning,
}

impl ClientKey {
    fn of(s: &Settings, t: &Tuning) -> ClientKey {
        ClientKey {
            region: s.region.clone(),
            endpoint: s.endpoint.clone(),
            force_path_style: s.force_path_style,
            skip_verify: s.skip_verify,
            credentials: s.credentials.clone(),
            tuning: *t,
        }
    }
}

/// The clients built so far, one per distinct [`ClientKey`]. A client (its configuration,
/// interceptors, connection pool and credential cache) costs about 100 KiB, so the databases
/// of a directory entry, which differ only in their prefix, share one instead of building one
/// each. Never emptied: it holds one entry per store and credentials the configuration names,
/// so a linear search is enough.
static CLIENTS: Mutex<Vec<(ClientKey, aws_sdk_s3::Client)>> = Mutex::new(Vec::new());

/// The client for `s` and `t`: the one already built for the same store and credentials, or a
/// new one. Runs on the S3 runtime (whose one thread also serialises the builds).
pub async fn shared_client(s: &Settings, t: &Tuning) -> aws_sdk_s3::Client {
    let key = ClientKey::of(s, t);
    let find = |key: &ClientKey| {
        let clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| c.clone())
    };
    if let Some(c) = find(&key) {
        return c;
    }
    let built = build_client(s, t).await;
    if let Some(c) = find(&key) {
        return c;
    }
    CLIENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, built.clone()));
    built
}

/// Builds the client. Runs on the S3 runtime (the default chain is set up asynchronously; it
/// makes no request until the first S3 call needs credentials).
pub async fn build_client(s: &Settings, t: &Tuning) -> aws_sdk_s3::Client {
    let http = http_client(s.skip_verify);
    let provider = match &s.credentials {
        CredentialSource::Config { id, secret }
        | CredentialSource::LitestreamEnv { id, secret } => {
            SharedCredentialsProvider::new(Credentials::new(id, secret, None, None, "litestream"))
        }
        CredentialSource::AwsEnv { id, secret, token } => SharedCredentialsProvider::new(
            Credentials::new(id, secret, token.clone(), None, "environment"),
        ),
        CredentialSource::DefaultChain => {
            // `skip-verify` is for the store's endpoint only: the credential providers (STS web
            // identity, SSO, ECS) always verify certificates, so a forged STS cannot hand out
            // credentials it then sees used.
            let pc = aws_config::provider_config::ProviderConfig::without_region()
                .with_http_client(http_client(false))
                .with_region(Some(Region::new(s.region.clone())));
            SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .configure(pc)
                    .build()
                    .await,
            )
        }
    };
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(s.region.clone()))
        .http_client(http)
        .credentials_provider(provider)
        .force_path_style(s.force_path_style)
        // R2, B2 and older MinIO reject the SDK's default CRC trailers and aws-chunked
        // uploads: send checksums only where the API requires them (DeleteObjects).
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(timeouts(t, 0))
        .retry_config(RetryConfig::standard().with_max_attempts(t.max_attempts))
        .interceptor(super::request_counter::CountRequests);
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn cfg() -> S3Config {
        S3Config {
            bucket: "b".into(),
            path: "db".into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn credential_order() {
        let all: &[(&str, &str)] = &[
            ("LITESTREAM_ACCESS_KEY_ID", "lid"),
            ("LITESTREAM_SECRET_ACCESS_KEY", "lsk"),
            ("AWS_ACCESS_KEY_ID", "aid"),
            ("AWS_SECRET_ACCESS_KEY", "ask"),
            ("AWS_SESSION_TOKEN", "tok"),
        ];
        let mut c = cfg();
        c.access_key_id = Some("cid".into());
        c.secret_access_key = Some("csk".into());
        assert_eq!(
            Settings::resolve(&c, &env_of(all)).credentials,
            CredentialSource::Config {
                id: "cid".into(),
                secret: "csk".into()
            }
        );
        // Half a pair in the config does not count.
        c.secret_access_key = None;
        assert_eq!(
            Settings::resolve(&c, &env_of(all)).credentials,
            CredentialSource::LitestreamEnv {
                id: "lid".into(),
                secret: "lsk".into()
            }
        );
        assert_eq!(
            Settings::resolve(&cfg(), &env_of(&all[2..])).credentials,
            CredentialSource::AwsEnv {
                id: "aid".into(),
                secret: "ask".into(),
                token: Some("tok".into())
            }
        );
        assert_eq!(
            Settings::resolve(&cfg(), &env_of(&[("AWS_ACCESS_KEY_ID", "x")])).credentials,
            CredentialSource::DefaultChain
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = cfg();
        c.access_key_id = Some("AKIDEXAMPLE".into());
        c.secret_access_key = Some("wJalrXUtnFEMI".into());
        let s = Settings::resolve(&c, &|_| None);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("AKIDEXAMPLE") && !shown.contains("wJalrXUtnFEMI"),
            "{shown}"
        );
        assert!(shown.contains("configuration"), "{shown}");
    }

    #[test]
    fn defaults_region_endpoint_prefix() {
        let s = Settings::resolve(&cfg(), &|_| None);
        assert_eq!(s.region, DEFAULT_REGION);
        assert_eq!(
            (s.part_size, s.concurrency),
            (DEFAULT_PART_SIZE, DEFAULT_CONCURRENCY)
        );
        assert!(s.sign_payload && s.endpoint.is_none() && !s.force_path_style);
        assert_eq!(s.prefix, "db");
        let s = Settings::resolve(
            &S3Config {
                path: String::new(),
                part_size: Some(1024),
                ..cfg()
            },
            &env_of(&[
                ("AWS_REGION", "eu-west-3"),
                ("LITESTREAM_S3_ENDPOINT", "localhost:9000"),
            ]),
        );
        assert_eq!(s.prefix, ".");
        assert_eq!(s.region, "eu-west-3");
        assert_eq!(s.endpoint.as_deref(), Some("http://localhost:9000"));
        assert!(s.force_path_style);
        assert_eq!(s.part_size, MIN_PART_SIZE);
    }

    #[test]
    fn upload_timeout_grows_with_size() {
        let t = Tuning::default();
        let small = timeouts(&t, 0).operation_attempt_timeout().expect("set");
        let big = timeouts(&t, 1 << 30)
            .operation_attempt_timeout()
            .expect("set");
        assert_eq!(small, ATTEMPT_TIMEOUT);
        assert_eq!(
            big,
            ATTEMPT_TIMEOUT + Duration::from_secs((1 << 30) / MIN_UPLOAD_RATE)
        );
    }

    #[test]
    fn replicas_on_one_store_with_one_key_share_one_client() {
        // An endpoint no other test uses, so that only this test's entries match it.
        let endpoint = "http://127.0.0.1:9/shared-client-test";
        let settings = |path: &str, id: &str| {
            let mut c = cfg();
            c.path = path.into();
            c.endpoint = Some(endpoint.into());
            c.access_key_id = Some(id.into());
            c.secret_access_key = Some("secret".into());
            Settings::resolve(&c, &env_of(&[]))
        };
        let t = Tuning::default();
        for (path, id) in [("tenant/a.db", "k1"), ("tenant/b.db", "k1"), ("c.db", "k2")] {
            let s = settings(path, id);
            super::super::runtime::block_on(async move { shared_client(&s, &t).await })
                .expect("runtime");
        }
        let clients = CLIENTS.lock().unwrap();
        let ours = clients
            .iter()
            .filter(|(k, _)| k.endpoint.as_deref() == Some(endpoint))
            .count();
        assert_eq!(ours, 2, "one client per key id, whatever the prefix");
    }
}

//! Google credentials, in the order of Google's client libraries ("Application Default
//! Credentials"):
//! 1. `STORAGE_EMULATOR_HOST` set: no credentials (an emulator such as fake-gcs-server);
//! 2. `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key file (a JWT signed with its RSA
//!    key, exchanged for an access token) or an `authorized_user` file (a refresh token);
//! 3. gcloud's `~/.config/gcloud/application_default_credentials.json`;
//! 4. the metadata server of a Google Cloud VM / Cloud Run / GKE.
//!
//! Tokens are fetched when a request needs one (never while idle) and reused until shortly
//! before they expire. Nothing here logs or returns a token or a key.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::Method;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::replica::http::{HttpClient, Request, Sign};
use crate::replica::ReplicaError;

/// OAuth scope of every token: read and write objects.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Where service-account JWTs and refresh tokens are exchanged when the key file names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's token endpoint (VMs, Cloud Run, GKE).
const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed this long before it expires, so that no request carries a stale one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);
/// Lifetime asked for in a service-account JWT (Google's maximum).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);

/// Where tokens come from. Deliberately without `Debug`: it holds secrets.
pub enum Source {
    /// An emulator: no `Authorization` header.
    Anonymous,
    ServiceAccount {
        email: String,
        key: ring::signature::RsaKeyPair,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    Metadata,
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Anonymous => "none (emulator)",
            Source::ServiceAccount { .. } => "service account key",
            Source::AuthorizedUser { .. } => "authorized user",
            Source::Metadata => "metadata server",
        }
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// Why Google credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {}: not a Google key file: {source}", path.display())]
    NotKeyFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("credentials file {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "credentials file {}: type {kind:?} is not supported (use a service account key or \
         `gcloud auth application-default login`)",
        path.display()
    )]
    UnsupportedType { path: PathBuf, kind: String },
    #[error("the clock is before 1970")]
    Clock,
    #[error("signing the service account JWT failed")]
    Sign,
}

/// Picks the credential source; `env` reads the environment.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Source, CredentialsError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if var("STORAGE_EMULATOR_HOST").is_some() {
        return Ok(Source::Anonymous);
    }
    if let Some(path) = var("GOOGLE_APPLICATION_CREDENTIALS") {
        return from_file(&PathBuf::from(path));
    }
    if let Some(home) = var("HOME") {
        let adc = PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
        if adc.is_file() {
            return from_file(&adc);
        }
    }
    Ok(Source::Metadata)
}

/// Reads a key file (`service_account` or `authorized_user`).
pub fn from_file(path: &std::path::Path) -> Result<Source, CredentialsError> {
    let invalid = |problem: String| CredentialsError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let f: KeyFile =
        serde_json::from_str(&text).map_err(|source| CredentialsError::NotKeyFile {
            path: path.to_path_buf(),
            source,
        })?;
    let token_uri = f
        .token_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
    match f.kind.as_str() {
        "service_account" => {
            let (Some(email), Some(pem)) = (f.client_email, f.private_key) else {
                return Err(invalid(
                    "a service account key needs client_email and private_key".into(),
                ));
            };
            let der = pem_to_der(&pem)
                .ok_or_else(|| invalid("private_key is not a PEM \"PRIVATE KEY\"".into()))?;
            let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| invalid(format!("private_key is not a PKCS#8 RSA key: {e}")))?;
            Ok(Source::ServiceAccount {
                email,
                key,
                token_uri,
            })
        }
        "authorized_user" => match (f.client_id, f.client_secret, f.refresh_token) {
            (Some(client_id), Some(client_secret), Some(refresh_token)) => {
                Ok(Source::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                    token_uri,
                })
            }
            _ => Err(invalid(
                "an authorized_user file needs client_id, client_secret and refresh_token".into(),
            )),
        },
        other => Err(CredentialsError::UnsupportedType {
            path: path.to_path_buf(),
            kind: other.to_string(),
        }),
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A signed service-account JWT asking for [`SCOPE`] at `token_uri`, issued at `now`.
pub fn jwt(
    email: &str,
    key: &ring::signature::RsaKeyPair,
    token_uri: &str,
    now: SystemTime,
) -> Result<String, CredentialsError> {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CredentialsError::Clock)?
        .as_secs();
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": iat,
        "exp": iat + JWT_LIFETIME.as_secs(),
    });
    let unsigned = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        unsigned.as_bytes(),
        &mut sig,
    )
    .map_err(|_| CredentialsError::Sign)?;
    Ok(format!("{unsigned}.{}", b64url(&sig)))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// Adds `Authorization: Bearer …` with a cached token.
pub struct Signer {
    pub source: Source,
    pub http: HttpClient,
    cached: Mutex<Option<(String, Instant)>>,
}

impl Signer {
    pub fn new(source: Source, http: HttpClient) -> Signer {
        Signer {
            source,
            http,
            cached: Mutex::new(None),
        }
    }

    fn token(&self) -> Result<Option<String>, ReplicaError> {
        if matches!(self.source, Source::Anonymous) {
            return Ok(None);
        }
        let mut cached = self.cached.lock();
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let (token, lifetime) = self.fetch()?;
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        *cached = Some((token.clone(), until));
        Ok(Some(token))
    }

    fn fetch(&self) -> Result<(String, Duration), ReplicaError> {
        let shown = format!("gs credentials ({})", self.source.name());
        let fatal = |reason: String| ReplicaError::Fatal {
            key: shown.clone(),
            reason,
        };
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::replica::http::encode(v, false)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let req = match &self.source {
            Source::Anonymous => return Err(fatal("no token source".into())),
            Source::ServiceAccount {
                email,
                key,
                token_uri,
            } => {
                let assertion = jwt(email, key, token_uri, SystemTime::now())
                    .map_err(|e| fatal(e.to_string()))?;
                Request::new(Method::POST, token_uri.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &assertion),
                    ]))
            }
            Source::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => Request::new(Method::POST, token_uri.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ])),
            Source::Metadata => Request::new(Method::GET, METADATA_TOKEN_URL.to_string())
                .header("metadata-flavor", "Google"),
        };
        let resp = self.http.send("TOKEN", &shown, req, &NoAuth)?;
        if !resp.status.is_success() {
            // The answer of a token endpoint names the problem, never a secret of ours.
            let detail = resp.body_text();
            return Err(crate::replica::http::unexpected(
                "token request",
                &shown,
                &resp,
                &format!(": {}", detail.lines().next().unwrap_or_default()),
                "check GOOGLE_APPLICATION_CREDENTIALS",
            ));
        }
        let t: TokenAnswer = serde_json::from_slice(&resp.body)
            .map_err(|e| fatal(format!("token answer is not the expected JSON: {e}")))?;
        Ok((
            t.access_token,
            Duration::from_secs(t.expires_in.unwrap_or(JWT_LIFETIME.as_secs())),
        ))
    }
}

/// Sends a request as it is (token requests carry their own credentials).
pub struct NoAuth;

impl Sign for NoAuth {
    fn sign(&self, _req: &mut Request) -> Result<(), ReplicaError> {
        Ok(())
    }
}

impl Sign for Signer {
    fn sign(&self, req: &mut Request) -> Result<(), ReplicaError> {
        if let Some(token) = self.token()? {
            let r = std::mem::replace(req, Request::new(Method::GET, String::new()));
            *req = r.header("authorization", &format!("Bearer {token}"));
        }
        Ok(())
    }
}

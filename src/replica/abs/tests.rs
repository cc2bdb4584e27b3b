//! The `abs` backend against Azurite (npm `azurite@3.35.0`, installed by
//! `scripts/setup-test-env.sh`), which checks Shared Key signatures like Azure does.

use std::sync::OnceLock;

use super::*;
use crate::replica::conformance;
use crate::replica::test_servers::{self, Server};

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azurite() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let local = test_servers::repo_root().join(".test-servers/npm/node_modules/.bin");
            let Some(bin) = test_servers::find_tool("azurite-blob", &[local.join("azurite-blob")])
            else {
                test_servers::missing(
                    "Azurite",
                    "scripts/setup-test-env.sh installs npm azurite@3.35.0",
                );
                return None;
            };
            Some(test_servers::spawn(&bin, &|port| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            }))
        })
        .as_ref()
}

fn config(port: u16, container: &str, path: &str, key: &str) -> AbsConfig {
    AbsConfig {
        account_name: Some(ACCOUNT.into()),
        account_key: Some(key.into()),
        sas_token: None,
        bucket: container.into(),
        path: path.into(),
        endpoint: Some(format!("http://127.0.0.1:{port}/{ACCOUNT}")),
    }
}

fn quick() -> Tuning {
    Tuning {
        attempt_timeout: std::time::Duration::from_secs(10),
        ..Tuning::default()
    }
}

/// A replica on a new container, or `None` when Azurite is not installed.
fn fresh(path: &str) -> Option<AbsReplica> {
    let srv = azurite()?;
    let container = format!("c{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    let r = AbsReplica::with_env(&config(srv.port, &container, path, KEY), &|_| None, quick());
    r.create_container().expect("create container");
    Some(r)
}

fn plant(r: &AbsReplica) -> impl Fn(u8, &str, &[u8]) + '_ {
    move |level, name, data| {
        let blob = format!("{}/{name}", r.level_dir(level));
        let resp = r
            .put_blob(
                &blob,
                Bytes::copy_from_slice(data),
                None,
                &WriteCondition::Always,
            )
            .expect("plant");
        assert!(resp.status.is_success(), "plant {blob}: {}", resp.status);
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
fn conformance_suite_at_container_root() {
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
    assert_eq!(
        r.blob_name(3, 1, 0x2a),
        "db/ltx/3/0000000000000001-000000000000002a.ltx"
    );
    let (_, _, endpoint) = r.http().unwrap();
    let url = format!(
        "{endpoint}/{}?restype=container&comp=list&include=metadata",
        r.cfg.bucket
    );
    let resp = r.send("LIST", "", Request::new(Method::GET, url)).unwrap();
    let leaves = h::xml::leaves(&String::from_utf8_lossy(&resp.body)).unwrap();
    let get = |p: &str| {
        leaves
            .iter()
            .find(|(k, _)| k.ends_with(p))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("Blob/Name").as_deref(),
        Some("db/ltx/3/0000000000000001-000000000000002a.ltx")
    );
    assert_eq!(
        get("Metadata/litestreamtimestamp").as_deref(),
        Some("2023-11-14T22:13:20.123Z")
    );
    assert_eq!(
        get("Properties/Content-Type").as_deref(),
        Some("application/octet-stream")
    );
}

#[test]
fn large_files_go_up_in_blocks_and_read_back() {
    let Some(r) = fresh("big") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 12_345))
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
fn a_wrong_key_is_fatal_and_never_shown() {
    let Some(srv) = azurite() else { return };
    let wrong = "d3Jvbmcta2V5LXRoYXQtaXMtc2VjcmV0LXZhbHVl";
    let r = AbsReplica::with_env(&config(srv.port, "nope", "p", wrong), &|_| None, quick());
    let err = r.list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    let text = format!("{err} {err:?} {}", r.describe());
    assert!(!text.contains(wrong) && !text.contains(KEY), "{text}");
    assert!(
        text.contains("403") && text.contains("account-key"),
        "{text}"
    );
}

#[test]
fn missing_container_is_fatal_and_says_so() {
    let Some(srv) = azurite() else { return };
    let r = AbsReplica::with_env(&config(srv.port, "absent", "p", KEY), &|_| None, quick());
    let err = r.list(0).unwrap_err().to_string();
    assert!(err.contains("absent") && err.contains("create it"), "{err}");
}

#[test]
fn list_pages_are_parsed() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>
      <Blob><Name>p/ltx/0/0000000000000001-0000000000000002.ltx</Name><Properties>
        <Creation-Time>Wed, 09 Sep 2009 09:20:02 GMT</Creation-Time><Content-Length>7</Content-Length>
      </Properties><Metadata/></Blob>
      <Blob><Name>p/ltx/0/sub/0000000000000003-0000000000000003.ltx</Name></Blob>
      <Blob><Name>p/ltx/0/0000000000000004-0000000000000004.ltx</Name><Properties>
        <Content-Length>1</Content-Length></Properties>
        <Metadata><litestreamtimestamp>2009-09-09T09:20:02.5Z</litestreamtimestamp></Metadata></Blob>
      </Blobs><NextMarker>m&amp;1</NextMarker></EnumerationResults>"#;
    let (files, next) = parse_list(xml, "p/ltx/0/", 0).unwrap();
    assert_eq!(next.as_deref(), Some("m&1"));
    assert_eq!(files.len(), 2);
    assert_eq!((files[0].min_txid, files[0].size), (1, 7));
    assert_eq!(
        files[0].created_at,
        UNIX_EPOCH + std::time::Duration::from_secs(1_252_488_002)
    );
    assert_eq!(
        files[1].created_at,
        UNIX_EPOCH + std::time::Duration::from_millis(1_252_488_002_500)
    );
}

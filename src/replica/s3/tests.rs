//! The S3 backend against a real S3 implementation (moto), plus its pure helpers.

use std::io::Read;
use std::time::Duration;

use super::sdk::{CredentialSource, Settings, Tuning};
use super::test_server::plant;
use super::*;
use crate::config::S3Config;
use crate::replica::conformance;

/// A replica on its own new bucket of the shared moto server.
fn replica_on(endpoint: &str, bucket: &str, path: &str, tuning: Tuning) -> S3Replica {
    let cfg = S3Config {
        bucket: bucket.to_string(),
        path: path.to_string(),
        endpoint: Some(endpoint.to_string()),
        force_path_style: true,
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..S3Config::default()
    };
    S3Replica::with_tuning(Settings::resolve(&cfg, &|_| None), tuning)
}

fn fresh(path: &str) -> S3Replica {
    let bucket = format!("unit-{:016x}", fastrand::u64(..));
    let r = replica_on(test_server::endpoint(), &bucket, path, Tuning::default());
    r.create_bucket().expect("create bucket");
    r
}

#[test]
fn conformance_suite() {
    let r = fresh("some/db");
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn conformance_suite_at_bucket_root() {
    let r = fresh("");
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn layout_matches_official_litestream() {
    let r = fresh("pocketbase/pb_data.db");
    assert_eq!(
        r.object_key(9, 1, 0x25),
        "pocketbase/pb_data.db/0009/0000000000000001-0000000000000025.ltx"
    );
    assert_eq!(
        r.object_key(0, 2, 2),
        "pocketbase/pb_data.db/0000/0000000000000002-0000000000000002.ltx"
    );
    assert_eq!(
        r.key(10, 1, 1),
        format!(
            "s3://{}/pocketbase/pb_data.db/000a/0000000000000001-0000000000000001.ltx",
            r.settings().bucket
        )
    );
    let root = fresh("");
    assert_eq!(
        root.object_key(0, 1, 1),
        "./0000/0000000000000001-0000000000000001.ltx"
    );
    assert!(r.describe().starts_with("s3://unit-"), "{}", r.describe());
}

#[test]
fn timestamp_metadata_is_rfc3339_millis() {
    assert_eq!(
        format_timestamp(1_763_835_487_815),
        "2025-11-22T18:18:07.815Z"
    );
    assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
    let t = parse_timestamp("2025-11-22T18:18:07.815Z").expect("parse");
    assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1_763_835_487_815));
    // Go's RFC3339Nano drops trailing zeros; both forms parse.
    assert!(parse_timestamp("2025-11-22T18:18:07Z").is_some());
    assert!(parse_timestamp("yesterday").is_none());
}

#[test]
fn put_sets_metadata_and_content_type() {
    let r = fresh("meta");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("f.ltx");
    std::fs::write(&src, b"abc").expect("write");
    r.put(0, 1, 1, &src, 1_763_835_487_815).expect("put");
    let (bucket, key) = (r.settings().bucket.clone(), r.object_key(0, 1, 1));
    let head = r
        .run("", move |c| async move {
            c.head_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| map_sdk("HEAD", key.clone(), &e))
        })
        .expect("head");
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get(TIMESTAMP_METADATA))
            .map(String::as_str),
        Some("2025-11-22T18:18:07.815Z")
    );
    assert_eq!(head.content_type(), Some("application/octet-stream"));
}

#[test]
fn multipart_upload_of_a_large_file() {
    let r = fresh("big");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("big.ltx");
    // Three parts at the default 5 MiB part size, the last one short.
    let data: Vec<u8> = (0..(11 * 1024 * 1024 + 12_345u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&src, &data).expect("write");
    r.put(1, 1, 9, &src, 5_000).expect("multipart put");
    let files = r.list(1).expect("list");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, data.len() as u64);
    let mut got = Vec::new();
    r.open(1, 1, 9)
        .expect("open")
        .read_to_end(&mut got)
        .expect("read");
    assert!(got == data, "multipart object differs from the source");
    let mut timed = files.clone();
    r.resolve_timestamps(&mut timed).expect("timestamps");
    assert_eq!(
        timed[0].created_at,
        UNIX_EPOCH + Duration::from_millis(5_000)
    );
}

#[test]
fn concurrent_if_absent_has_exactly_one_winner() {
    let r = fresh("race");
    let wins = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|i| {
                let r = &r;
                s.spawn(move || {
                    r.write_object(
                        "lease.json",
                        format!("{i}").as_bytes(),
                        WriteCondition::IfAbsent,
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("join"))
            .filter(|res| match res {
                Ok(_) => true,
                Err(ReplicaError::AlreadyExists { .. }) => false,
                Err(e) => panic!("unexpected error: {e}"),
            })
            .count()
    });
    assert_eq!(wins, 1);
}

#[test]
fn missing_bucket_is_fatal_and_names_bucket_and_code() {
    let r = replica_on(
        test_server::endpoint(),
        "no-such-bucket-here",
        "db",
        Tuning::default(),
    );
    let err = r.list(0).expect_err("list of a missing bucket");
    let msg = err.to_string();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{msg}");
    assert!(
        msg.contains("no-such-bucket-here") && msg.contains("NoSuchBucket"),
        "{msg}"
    );
    assert!(!msg.contains("test:test"), "{msg}");
}

/// A server that accepts connections and never answers.
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: enough for the retries of the test below.
        for _ in 0..8 {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => return,
            }
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    (format!("http://{addr}"), h)
}

#[test]
fn a_stalled_store_times_out_as_transient() {
    let (endpoint, _h) = black_hole();
    let tuning = Tuning {
        attempt_timeout: Duration::from_millis(300),
        max_attempts: 2,
        ..Tuning::default()
    };
    let r = replica_on(&endpoint, "b", "db", tuning);
    let err = r.list(0).expect_err("must time out");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("s3://b/db/0000/"), "{err}");
}

#[test]
fn credentials_never_appear_in_errors_or_debug() {
    let cfg = S3Config {
        bucket: "b".into(),
        path: "db".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        force_path_style: true,
        access_key_id: Some("AKIAEXAMPLEKEYID".into()),
        secret_access_key: Some("verysecretvalue".into()),
        ..S3Config::default()
    };
    let r = S3Replica::with_tuning(
        Settings::resolve(&cfg, &|_| None),
        Tuning {
            connect_timeout: Duration::from_millis(200),
            max_attempts: 1,
            ..Tuning::default()
        },
    );
    assert!(matches!(
        r.settings().credentials,
        CredentialSource::Config { .. }
    ));
    let err = r.list(0).expect_err("nothing listens on port 9");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{r:?}"),
        r.describe(),
    ] {
        assert!(
            !shown.contains("AKIAEXAMPLEKEYID") && !shown.contains("verysecretvalue"),
            "{shown}"
        );
    }
    assert!(err.is_transient(), "{err}");
}

/// The value of the metrics line starting with `prefix`, 0 if absent.
fn metric(prefix: &str) -> u64 {
    crate::metrics::render(&[])
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[test]
fn requests_are_counted_in_the_metrics_by_kind() {
    let r = fresh("metrics");
    let put = r#"litestream_replica_operation_total{replica_type="s3",operation="PUT"}"#;
    let list = r#"litestream_replica_operation_total{replica_type="s3",operation="LIST"}"#;
    let (puts, lists) = (metric(put), metric(list));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("f.ltx");
    std::fs::write(&src, b"abc").expect("write");
    r.put(0, 1, 1, &src, 0).expect("put");
    r.list(0).expect("list");
    // Other tests run in parallel and count too: at least ours are there.
    assert!(metric(put) > puts, "{}", crate::metrics::render(&[]));
    assert!(metric(list) > lists, "{}", crate::metrics::render(&[]));
}

/// A server whose every LIST answer is truncated with the same continuation token.
fn repeating_lister() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>\
            <Prefix>db/0000/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>\
            <IsTruncated>true</IsTruncated><NextContinuationToken>again</NextContinuationToken>\
            </ListBucketResult>";
        // Bounded: the guard stops after the second answer; a loop would exhaust these.
        for _ in 0..50 {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), count)
}

#[test]
fn a_repeated_list_continuation_token_is_an_error_not_a_loop() {
    let (endpoint, count) = repeating_lister();
    let r = replica_on(&endpoint, "b", "db", Tuning::default());
    let err = r.list(0).expect_err("must not loop");
    assert!(err.to_string().contains("continuation token"), "{err}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
}

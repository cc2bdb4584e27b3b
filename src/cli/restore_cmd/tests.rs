use std::fs;

use super::*;
use crate::cli::tests::run_args;
use crate::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use crate::replica::FileReplica;

fn err_of(args: &[&str]) -> String {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    let (code, out, err) = run_args(&a);
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.starts_with("Error: "), "{err}");
    err.trim_end().trim_start_matches("Error: ").to_string()
}

#[test]
fn argument_errors() {
    assert_eq!(err_of(&[]), "database path or replica URL required");
    assert_eq!(err_of(&["a", "b"]), "too many arguments");
    assert_eq!(err_of(&["-x", "a"]), "flag provided but not defined: -x");
    assert!(err_of(&["-txid", "3", "-o", "x", "file:///r"]).starts_with("invalid txid format"));
    assert!(err_of(&["-timestamp", "yesterday", "-o", "x", "file:///r"])
        .starts_with("invalid -timestamp"));
    assert_eq!(
        err_of(&["-f", "-txid", "0000000000000001", "-o", "x", "file:///r"]),
        "cannot use follow mode (-f) with -txid or -timestamp"
    );
    assert!(
        err_of(&["-f", "-follow-interval", "0", "-o", "x", "file:///r"])
            .starts_with("invalid -follow-interval")
    );
    assert!(
        err_of(&["-integrity-check", "deep", "-o", "x", "file:///r"])
            .starts_with("invalid -integrity-check mode \"deep\"")
    );
    assert!(err_of(&["file:///r"]).starts_with("output path required"));
    assert_eq!(
        err_of(&["-config", "c.yml", "-o", "x", "file:///r"]),
        "cannot specify a replica URL and the -config flag"
    );
    assert!(err_of(&["-parallelism", "0", "-o", "x", "file:///r"]).contains("-parallelism"));
    assert!(err_of(&[
        "-txid",
        "0000000000000001",
        "-timestamp",
        "2020-01-01T00:00:00Z",
        "x"
    ])
    .contains("both"));
}

#[test]
fn help_prints_usage() {
    let (code, out, _) = run_args(&["restore", "-h"]);
    assert_eq!(code, 0);
    assert!(out.contains("-if-replica-exists"));
}

#[test]
fn url_detection() {
    assert!(is_url("file:///x"));
    assert!(is_url("s3://bucket/p"));
    assert!(!is_url("/var/db.sqlite"));
    assert!(!is_url("://x"));
    assert!(!is_url("./a://b"));
}

#[test]
fn timestamps_with_offsets() {
    let a = parse_target(None, Some("2024-01-02T03:04:05+02:00")).unwrap();
    let b = parse_target(None, Some("2024-01-02T01:04:05Z")).unwrap();
    assert_eq!(a, b);
    let c = parse_target(None, Some("2024-01-02T01:04:05.250Z")).unwrap();
    assert_ne!(b, c);
    assert_eq!(
        parse_target(Some("00000000000000ff"), None).unwrap(),
        Target::TxId(0xff)
    );
}

/// A replica with three L0 files (page size 512) and the expected database bytes after each.
fn replica(dir: &Path) -> (String, Vec<Vec<u8>>) {
    let client = FileReplica::new(dir.join("replica"));
    let mut db = vec![0u8; 3 * 512];
    let mut states = Vec::new();
    for txid in 1..=3u64 {
        let pages: Vec<u32> = if txid == 1 {
            vec![1, 2, 3]
        } else {
            vec![txid as u32]
        };
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: 512,
            commit: 3,
            min_txid: txid,
            max_txid: txid,
            timestamp_ms: 1_700_000_000_000 + txid as i64 * 10_000,
            ..Header::default()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        for p in pages {
            let mut data = vec![(txid * 16 + u64::from(p)) as u8; 512];
            if p == 1 {
                crate::restore::stamp_header(&mut data, 512);
            }
            db[(p as usize - 1) * 512..p as usize * 512].copy_from_slice(&data);
            enc.write_page(p, &data).unwrap();
        }
        let bytes = enc.finish().unwrap().0;
        let src = dir.join("src.ltx");
        fs::write(&src, bytes).unwrap();
        client
            .put(0, txid, txid, &src, header.timestamp_ms)
            .unwrap();
        states.push(db.clone());
    }
    (format!("file://{}", dir.join("replica").display()), states)
}

#[test]
fn restores_from_url() {
    let dir = tempfile::tempdir().unwrap();
    let (url, states) = replica(dir.path());
    let out = dir.path().join("out.db");
    let o = out.to_str().unwrap();
    let (code, stdout, stderr) = run_args(&["restore", "-o", o, &url]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("0000000000000003"), "{stdout}");
    assert_eq!(fs::read(&out).unwrap(), states[2]);

    // Existing output: error without -force, skip with -if-db-not-exists, replace with -force.
    let e = err_of(&["-o", o, &url]);
    assert!(e.contains("already exists"), "{e}");
    let (code, _, _) = run_args(&["restore", "-if-db-not-exists", "-o", o, &url]);
    assert_eq!(code, 0);
    let (code, stdout, _) = run_args(&[
        "restore",
        "-force",
        "-json",
        "-txid",
        "0000000000000002",
        "-o",
        o,
        &url,
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["txid"], "0000000000000002");
    assert_eq!(v["db_path"], o);
    assert_eq!(v["replica"], url.as_str());
    assert!(v["duration_ms"].is_u64());
    assert_eq!(fs::read(&out).unwrap(), states[1]);

    // Strictly before the third file's time: state after TXID 2.
    fs::remove_file(&out).unwrap();
    let (code, _, stderr) = run_args(&[
        "restore",
        "-timestamp",
        "2023-11-14T22:13:50Z",
        "-o",
        o,
        &url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fs::read(&out).unwrap(), states[1]);
}

#[test]
fn dry_run_prints_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = replica(dir.path());
    let out = dir.path().join("out.db");
    let (code, stdout, stderr) =
        run_args(&["restore", "-dry-run", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.contains("0000000000000002-0000000000000002.ltx"));
    assert!(!out.exists());
    let (code, stdout, _) = run_args(&[
        "restore",
        "-dry-run",
        "-json",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    assert_eq!(v["txid"], "0000000000000003");
}

#[test]
fn missing_replica() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("none").display());
    let out = dir.path().join("out.db");
    let o = out.to_str().unwrap();
    assert_eq!(
        err_of(&["-o", o, &url]),
        "no matching backup files available"
    );
    let (code, _, _) = run_args(&["restore", "-if-replica-exists", "-o", o, &url]);
    assert_eq!(code, 0);
    assert!(!out.exists());
}

#[test]
fn s3_store_unreachable_names_the_bucket_and_leaves_no_output() {
    // Static credentials, so that no AWS default-chain lookup (IMDS) runs in a unit test.
    std::env::set_var("LITESTREAM_ACCESS_KEY_ID", "unit-test-key-id");
    std::env::set_var("LITESTREAM_SECRET_ACCESS_KEY", "unit-test-secret");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    // Port 9 (discard) on loopback: nothing listens there in a test environment.
    let url = "s3://bucket/db?endpoint=http://127.0.0.1:9";
    let e = err_of(&["-o", out.to_str().unwrap(), url]);
    assert!(
        e.contains("s3://bucket/db/0000/") && e.contains("LIST failed"),
        "{e}"
    );
    assert!(!e.contains("unit-test-secret"), "{e}");
    assert!(!out.exists());
}

/// A replica whose one L0 file holds the pages of a real SQLite database made by the system's
/// SQLite (page size 1024).
fn real_replica(dir: &Path) -> String {
    let src_db = dir.join("real.db");
    {
        let c = crate::ffi::sqlite_lib::LibConn::open(&src_db, false).unwrap();
        c.exec("PRAGMA page_size=1024; CREATE TABLE t(a); CREATE INDEX i ON t(a); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
    }
    let bytes = fs::read(&src_db).unwrap();
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: 1024,
        commit: (bytes.len() / 1024) as u32,
        min_txid: 1,
        max_txid: 1,
        timestamp_ms: 1_700_000_000_000,
        ..Header::default()
    };
    let mut enc = Encoder::new(Vec::new(), &header).unwrap();
    for (i, page) in bytes.chunks(1024).enumerate() {
        enc.write_page(i as u32 + 1, page).unwrap();
    }
    let src = dir.join("real.ltx");
    fs::write(&src, enc.finish().unwrap().0).unwrap();
    let client = FileReplica::new(dir.join("real-replica"));
    client.put(0, 1, 1, &src, header.timestamp_ms).unwrap();
    format!("file://{}", dir.join("real-replica").display())
}

#[test]
fn integrity_check_after_restore() {
    let dir = tempfile::tempdir().unwrap();
    let good = real_replica(dir.path());
    for mode in ["quick", "full"] {
        let out = dir.path().join(format!("good-{mode}.db"));
        let o = out.display().to_string();
        let (code, _, err) = run_args(&["restore", "-integrity-check", mode, "-o", &o, &good]);
        assert_eq!(code, 0, "{err}");
    }
    // Pages that are not b-tree pages: restored (the LTX files are valid), then refused.
    let (junk, _) = replica(dir.path());
    let out = dir.path().join("junk.db");
    let o = out.display().to_string();
    let e = err_of(&["-integrity-check", "quick", "-o", &o, &junk]);
    assert!(e.starts_with("integrity check failed on "), "{e}");
    assert!(out.exists(), "left in place for inspection");
}

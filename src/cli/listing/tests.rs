use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::cli::tests::run_args;
use crate::replica::FileReplica;

#[test]
fn tables_pad_like_go_tabwriter() {
    let rows = vec![
        vec![
            "level".into(),
            "min_txid".into(),
            "size".into(),
            "created".into(),
        ],
        vec![
            "0".into(),
            "0000000000000023".into(),
            "3881".into(),
            "x".into(),
        ],
        vec![
            "0".into(),
            "0000000000000024".into(),
            "939".into(),
            "y".into(),
        ],
    ];
    let mut out = Vec::new();
    write_table(&mut out, &rows).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "level  min_txid          size  created\n\
         0      0000000000000023  3881  x\n\
         0      0000000000000024  939   y\n"
    );
}

#[test]
fn times_are_rfc3339_seconds_utc() {
    let t = UNIX_EPOCH + Duration::from_millis(1_795_379_391_999);
    assert_eq!(rfc3339_seconds(t), "2026-11-22T20:29:51Z");
}

fn replica_with_files() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let client = FileReplica::new(dir.path().join("r"));
    let src = dir.path().join("src");
    fs::write(&src, vec![0u8; 1234]).unwrap();
    client.put(0, 0x23, 0x23, &src, 1_795_379_391_000).unwrap();
    client.put(1, 1, 0x22, &src, 1_795_379_390_000).unwrap();
    client.put(9, 1, 0x20, &src, 1_795_379_380_000).unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    (dir, url)
}

#[test]
fn ltx_lists_one_level_or_all() {
    let (_dir, url) = replica_with_files();
    let (code, out, err) = run_args(&["ltx", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "level  min_txid          max_txid          size  created\n\
         0      0000000000000023  0000000000000023  1234  2026-11-22T20:29:51Z\n"
    );
    let (code, out, _) = run_args(&["ltx", "-level", "all", &url]);
    assert_eq!(code, 0);
    let levels: Vec<&str> = out.lines().skip(1).map(|l| &l[..1]).collect();
    assert_eq!(levels, vec!["0", "1", "9"]);
    let (code, out, _) = run_args(&["ltx", "-level", "9", "-json", &url]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "[\n  {\n    \"level\": 9,\n    \"min_txid\": \"0000000000000001\",\n    \"max_txid\": \"0000000000000020\",\n    \"size\": 1234,\n    \"timestamp\": \"2026-11-22T20:29:40Z\"\n  }\n]\n"
    );
    let (code, out, _) = run_args(&["ltx", "-level", "5", "-json", &url]);
    assert_eq!((code, out.as_str()), (0, "[]\n"));
}

#[test]
fn ltx_argument_errors() {
    let err = |args: &[&str]| {
        let (code, _, err) = run_args(args);
        assert_eq!(code, 1);
        err
    };
    assert!(err(&["ltx", "-level", "12", "file:///r"]).contains("level must be between 0 and 9"));
    assert!(err(&["ltx", "-level", "x", "file:///r"]).contains("must be 0-9 or \"all\""));
    assert!(err(&["ltx"]).contains("database path or replica URL required"));
    assert!(err(&["ltx", "a", "b"]).contains("too many arguments"));
    assert!(err(&["ltx", "-config", "c.yml", "file:///r"]).contains("cannot specify a replica URL"));
    let (code, out, _) = run_args(&["ltx", "-h"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("The ltx command"));
}

#[test]
fn ltx_and_databases_with_a_config() {
    let (dir, _url) = replica_with_files();
    let cfg = dir.path().join("litestream.yml");
    let db = dir.path().join("app.db");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            db.display(),
            dir.path().join("r").display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    let (code, out, err) = run_args(&["ltx", "-config", &cfg_s, &db.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, _, err) = run_args(&["ltx", "-config", &cfg_s, "/nonexistent.db"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("database not found in config: /nonexistent.db"),
        "{err}"
    );

    let (code, out, _) = run_args(&["databases", "-config", &cfg_s]);
    assert_eq!(code, 0);
    let path = db.display().to_string();
    let pad = " ".repeat(path.len() - 4 + 2);
    assert_eq!(out, format!("path{pad}replica\n{path}  file\n"));
    let (code, out, _) = run_args(&["databases", "-config", &cfg_s, "-json"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("[\n  {{\n    \"path\": \"{path}\",\n    \"replica\": \"file\"\n  }}\n]\n")
    );
}

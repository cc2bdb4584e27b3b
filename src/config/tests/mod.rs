//! Whole-file tests: each rule of spec §5 as this library applies it.
use super::*;
use proptest::prelude::*;

const FILE: &str = "litestream.yml";
const SECRET: &str = "wJalrXUtnFEMI-K7MDENG";

fn lookup(name: &str) -> Option<String> {
    match name {
        "BUCKET" => Some("env-bucket".into()),
        "SECRET" => Some(SECRET.into()),
        "DIR" => Some("/data".into()),
        _ => None,
    }
}

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    let env = resolve::Env {
        cwd: Path::new("/srv/app"),
        home: Some(Path::new("/home/u")),
    };
    parse_text(yaml, Some(Path::new(FILE)), &lookup, &env)
}

fn ok(yaml: &str) -> Config {
    parse(yaml).unwrap_or_else(|e| panic!("{e}\n--- yaml:\n{yaml}"))
}

fn err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(c) => panic!("expected an error, got {c:?}\n--- yaml:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn s3(c: &Config) -> &S3Config {
    match &c.dbs[0].replica.backend {
        Backend::S3(s) => s,
        other => panic!("not s3: {other:?}"),
    }
}

fn file_dir(c: &Config) -> &Path {
    match &c.dbs[0].replica.backend {
        Backend::File { path } => path,
        other => panic!("not file: {other:?}"),
    }
}

#[test]
fn minimal_file_replica_and_defaults() {
    let c = ok("dbs:\n  - path: /data/app.db\n    replica:\n      url: file:///backups/app\n");
    assert_eq!(c.dbs.len(), 1);
    let db = &c.dbs[0];
    assert_eq!(db.path, Path::new("/data/app.db"));
    assert_eq!(file_dir(&c), Path::new("/backups/app"));
    assert_eq!(db.replica.sync_interval, DEFAULT_SYNC_INTERVAL);
    assert_eq!(db.meta_dir(), Path::new("/data/.app.db-liblitestream"));
    assert!(!db.restore_if_db_not_exists);
    assert_eq!(db.lag_alert, None);
    assert_eq!(c.levels, DEFAULT_LEVELS.to_vec());
    assert_eq!(c.snapshot_interval, Duration::from_secs(86_400));
    assert_eq!(c.snapshot_retention, Duration::from_secs(86_400));
    assert_eq!(c.l0_retention, Duration::from_secs(300));
    assert_eq!(c.l0_retention_check_interval, Duration::from_secs(15));
    assert!(c.retention_enabled);
    assert_eq!(c.shutdown_sync_timeout, Duration::from_secs(30));
    assert_eq!(c.shutdown_sync_interval, Duration::from_millis(500));
    assert_eq!((c.addr.clone(), c.lag_alert), (None, None));
    assert_eq!(c.logging, LoggingConfig::default());
}

#[test]
fn every_supported_key() {
    let c = ok(r#"
addr: ":9090"
lag-alert: 10s
levels: [{interval: 10s}, {interval: 1m}]
snapshot: {interval: 1h, retention: 2h}
l0-retention: 0
l0-retention-check-interval: 5s
retention: {enabled: false}
shutdown-sync-timeout: 0s
shutdown-sync-interval: 250ms
logging: {level: DEBUG, type: json, stderr: true}
dbs:
  - path: ~/a.db
    meta-path: ./meta
    restore-if-db-not-exists: true
    lag-alert: 3s
    replica:
      type: file
      path: rel/backup
      sync-interval: 0
    read-replicas:
      - {name: ro, path: ro.db, poll-interval: 200ms}
      - {path: /abs/ro2.db, type: file}
  - path: b.db
    replicas:
      - url: s3://bkt/b
"#);
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(c.lag_alert, Some(Duration::from_secs(10)));
    assert_eq!(
        c.levels,
        vec![Duration::from_secs(10), Duration::from_secs(60)]
    );
    assert_eq!(
        (c.snapshot_interval, c.snapshot_retention),
        (Duration::from_secs(3600), Duration::from_secs(7200))
    );
    assert_eq!(c.l0_retention, Duration::ZERO);
    assert_eq!(c.l0_retention_check_interval, Duration::from_secs(5));
    assert!(!c.retention_enabled);
    assert_eq!(c.shutdown_sync_timeout, Duration::ZERO);
    assert_eq!(c.shutdown_sync_interval, Duration::from_millis(250));
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: Some("debug".into()),
            format: LogFormat::Json,
            stderr: true
        }
    );
    let a = &c.dbs[0];
    assert_eq!(a.path, Path::new("/home/u/a.db"));
    assert_eq!(a.meta_path.as_deref(), Some(Path::new("/srv/app/meta")));
    assert_eq!(a.meta_dir(), Path::new("/srv/app/meta"));
    assert!(a.restore_if_db_not_exists);
    assert_eq!(a.lag_alert, Some(Duration::from_secs(3)));
    assert_eq!(file_dir(&c), Path::new("/srv/app/rel/backup"));
    assert_eq!(a.replica.sync_interval, Duration::ZERO);
    assert_eq!(
        a.read_replicas,
        vec![
            ReadReplicaConfig {
                name: Some("ro".into()),
                kind: "file".into(),
                path: "/srv/app/ro.db".into(),
                poll_interval: Duration::from_millis(200)
            },
            ReadReplicaConfig {
                name: None,
                kind: "file".into(),
                path: "/abs/ro2.db".into(),
                poll_interval: DEFAULT_POLL_INTERVAL
            },
        ]
    );
    let b = &c.dbs[1];
    assert_eq!(b.path, Path::new("/srv/app/b.db"));
    assert_eq!(
        b.lag_alert,
        Some(Duration::from_secs(10)),
        "inherits the top-level lag-alert"
    );
    assert!(matches!(&b.replica.backend, Backend::S3(s) if s.bucket == "bkt" && s.path == "b"));
}

#[test]
fn unknown_keys_and_legacy_keys_are_ignored() {
    let c = ok(r#"
exec: myapp
socket: {enabled: true}
mcp-addr: ":3001"
whatever: [1, 2]
dbs:
  - path: /a.db
    monitor-interval: 1s
    checkpoint-interval: 1m
    future-key: {x: 1}
    replica:
      url: file:///r
      retention: 24h
      snapshot-interval: 1h
      retention-check-interval: 1h
      max-sync-ltx-files: 10
"#);
    assert_eq!(file_dir(&c), Path::new("/r"));
}

#[test]
fn empty_documents_are_empty_configs() {
    for text in ["", "\n", "# only a comment\n", "~\n"] {
        let c = ok(text);
        assert!(c.dbs.is_empty(), "{text:?}");
        assert_eq!(c.levels, DEFAULT_LEVELS.to_vec());
    }
}

#[test]
fn errors_name_file_line_column_and_key() {
    let yaml =
        "dbs:\n  - path: /a.db\n    replica:\n      sync-interval: 1x\n      url: file:///r\n";
    assert_eq!(
        err(yaml),
        "litestream.yml: line 4 column 22: dbs[0].replica.sync-interval: invalid duration \"1x\": \
         unknown unit \"x\"; use a number with a unit: ns, us, ms, s, m or h (e.g. \"1s\", \
         \"500ms\", \"1h30m\")"
    );
    let e = err("dbs:\n  - path: /a.db\n    replica: {url: file:///r, sync-interval: 5}\n");
    assert!(e.starts_with("litestream.yml: line 3 column 46: dbs[0].replica.sync-interval: invalid duration 5: a unit is required"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      url: file:///r\n    restore-if-db-not-exists: sure\n");
    assert!(
        e.starts_with(
            "litestream.yml: line 5 column 31: dbs[0].restore-if-db-not-exists: invalid type"
        ),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a.db\n    replica:\n   url: [\n");
    assert!(e.starts_with("litestream.yml: line 4 column"), "{e}");
    let e = err("levels:\n  - {}\n");
    assert!(
        e.starts_with("litestream.yml: line 2 column 5: levels[0]: missing field `interval`"),
        "{e}"
    );
}

#[test]
fn rule_violations() {
    let db = |replica: &str| format!("dbs:\n  - path: /data/x.db\n    replica:\n{replica}");
    let cases: Vec<(String, &str)> = vec![
        ("dbs:\n  - replica: {url: file:///r}\n".into(), "line 2 column 5: dbs[0]: missing `path`"),
        ("dbs:\n  - dir: /nonexistent-liblitestream-dir\n    pattern: '*.db'\n    replica: {url: file:///r}\n".into(),
            "dbs[0].dir: /nonexistent-liblitestream-dir: No such file or directory (os error 2); create the directory or fix `dir`"),
        ("dbs:\n  - path: /x.db\n".into(), "line 2 column 5: dbs[0]: database /x.db: no replica configured"),
        ("dbs:\n  - path: /x.db\n    replicas: []\n".into(), "no replica configured"),
        ("dbs:\n  - path: /x.db\n    replica: {url: file:///r}\n    replicas: [{url: file:///s}]\n".into(),
            "dbs[0]: database /x.db: `replica` and `replicas` are both set"),
        ("dbs:\n  - path: /x.db\n    replicas: [{url: file:///r}, {url: file:///s}]\n".into(),
            "line 3 column 15: dbs[0].replicas: database /x.db: 2 replicas configured"),
        (db("      url: file:///r\n      path: /s\n"), "line 4 column 7: dbs[0].replica: `url` and `path` are both set"),
        (db("      url: s3://b/p\n      bucket: c\n"), "dbs[0].replica: `url` and `bucket` are both set"),
        (db("      path: s3://b/p\n"), "line 4 column 13: dbs[0].replica.path: \"s3://b/p\" is a URL"),
        (db("      type: oss\n      path: p\n"), "line 4 column 7: dbs[0].replica: database /data/x.db: an oss replica needs `bucket`"),
        (db("      type: sftp\n      path: p\n"), "line 4 column 7: dbs[0].replica: database /data/x.db: an sftp replica needs `host`"),
        (db("      type: gs\n      path: p\n"), "line 4 column 7: dbs[0].replica: database /data/x.db: a gs replica needs `bucket`"),
        (db("      url: sftp://h/p\n"), "dbs[0].replica: database /data/x.db: an sftp replica needs `user`"),
        (db("      type: ftp\n      path: p\n"), "database /data/x.db: unknown replica type \"ftp\""),
        (db("      url: file://./rel\n"), "dbs[0].replica.url: database /data/x.db: replica url \"file://./rel\": a file url must be file:///absolute/path"),
        (db("      type: file\n"), "dbs[0].replica: database /data/x.db: a file replica needs `path`"),
        (db("      type: s3\n      path: p\n"), "dbs[0].replica: database /data/x.db: an s3 replica needs `bucket`"),
        (db("      url: file:///r\n      age: {identities: [x]}\n"), "line 5 column 12: dbs[0].replica.age: age encryption is not supported"),
        ("age: {recipients: [x]}\ndbs: []\n".into(), "line 1 column 6: age: age encryption is not supported"),
        (db("      url: s3://b/p\n      concurrency: 0\n"), "dbs[0].replica.concurrency: must be greater than 0"),
        (db("      url: s3://b/p\n      part-size: 5XB\n"), "dbs[0].replica.part-size: invalid size \"5XB\""),
        (db("      url: s3://b/p?partSize=x\n"), "query partSize: \"x\" is not a positive integer"),
        (db("      url: file:///r\n      sync-interval: -1s\n"), "must not be negative"),
        (format!("levels: [{{interval: 0s}}]\n{}", db("      url: file:///r\n")), "line 1 column 21: levels[0].interval: must be greater than 0"),
        ("levels: [{interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}, {interval: 1s}]\n".into(),
            "levels: at most 8 compaction levels"),
        ("snapshot: {interval: 0}\n".into(), "snapshot.interval: must be greater than 0"),
        ("l0-retention-check-interval: 0s\n".into(), "l0-retention-check-interval: must be greater than 0"),
        ("shutdown-sync-interval: 0s\n".into(), "shutdown-sync-interval: must be greater than 0"),
        ("logging: {level: loud}\n".into(), "line 1 column 18: logging.level: unknown log level \"loud\""),
        ("logging: {type: xml}\n".into(), "logging.type: unknown log type \"xml\""),
        ("dbs:\n  - {path: /a.db, replica: {url: file:///r}}\n  - {path: /b/../a.db, replica: {url: file:///s}}\n".into(),
            "dbs[1].path: /a.db is already configured by dbs[0]"),
        ("dbs:\n  - {path: /a.db, replica: {url: file:///r}}\n  - {path: /b.db, replica: {type: file, path: /r}}\n".into(),
            "dbs[1].replica: dbs[0] already replicates to this replica"),
        ("dbs:\n  - {path: /a.db, replica: {url: s3://b/p}}\n  - {path: /b.db, replica: {url: s3://b/p/}}\n".into(),
            "dbs[1].replica: dbs[0] already replicates to this replica"),
        ("addr: \":notaport\"\n".into(), "addr: \":notaport\" is not a listen address"),
        ("addr: \"localhost\"\n".into(), "is not a listen address"),
        ("dbs:\n  - {path: /a.db, snapshot: {interval: 1h}, replica: {url: file:///r}}\n  - {path: /b.db, snapshot: {interval: 2h}, replica: {url: file:///s}}\n".into(),
            "dbs[1].snapshot.interval: conflicts with dbs[0].snapshot.interval (2h0m0s vs 1h0m0s)"),
        (db("      url: s3://${BUCKET_UNSET}/p\n"), "bucket required"),
        (db("      url: s3://b/p\n      read-replicas: []\n    read-replicas: [{name: x}]\n"), "dbs[0].read-replicas[0]: missing `path`"),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml);
        assert!(e.starts_with("litestream.yml: "), "{e}");
        assert!(
            e.contains(want),
            "want {want:?}\n got {e}\n--- yaml:\n{yaml}"
        );
    }
}

#[test]
fn per_db_snapshot_becomes_global_unless_global_is_set() {
    let two = "  - {path: /a.db, snapshot: {interval: 2h}, replica: {url: file:///r}}\n  - {path: /b.db, snapshot: {interval: 2h, retention: 3h}, replica: {url: file:///s}}\n";
    let c = ok(&format!("dbs:\n{two}"));
    assert_eq!(
        (c.snapshot_interval, c.snapshot_retention),
        (Duration::from_secs(7200), Duration::from_secs(10800))
    );
    let c = ok(&format!("snapshot: {{interval: 1h}}\ndbs:\n{two}"));
    assert_eq!(c.snapshot_interval, Duration::from_secs(3600));
}

#[test]
fn s3_replicas_from_urls_keys_and_globals() {
    let c = ok("dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/pre/fix?endpoint=localhost:9000&region=r1&skip-verify=true\n");
    let s = s3(&c);
    assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "pre/fix"));
    assert_eq!(s.endpoint.as_deref(), Some("http://localhost:9000"));
    assert_eq!(s.region.as_deref(), Some("r1"));
    assert!(
        s.force_path_style && s.skip_verify,
        "endpoint implies path style"
    );

    let c = ok("dbs:\n  - path: /a.db\n    replica: {url: 's3://bkt?endpoint=http://h:1&forcePathStyle=false'}\n");
    assert!(!s3(&c).force_path_style);
    assert_eq!(s3(&c).path, "", "bucket root");

    let c = ok("dbs:\n  - path: /a.db\n    replica: {url: s3://bkt/p}\n");
    assert!(!s3(&c).force_path_style && s3(&c).endpoint.is_none());

    // keys instead of a url; top-level replica keys are inherited; per-replica keys win.
    let c = ok(r#"
bucket: global-bkt
region: global-region
access-key-id: AKIAGLOBAL
secret-access-key: ${SECRET}
sync-interval: 5s
endpoint: minio.local:9000
part-size: 5MiB
dbs:
  - path: /a.db
    replica:
      type: s3
      path: /db/a/
      region: own-region
      concurrency: 3
  - path: /b.db
    replica:
      url: s3://url-bkt/b?region=url-region
      sync-interval: 2s
      force-path-style: false
"#);
    let a = s3(&c);
    assert_eq!((a.bucket.as_str(), a.path.as_str()), ("global-bkt", "db/a"));
    assert_eq!(a.region.as_deref(), Some("own-region"));
    assert_eq!(a.endpoint.as_deref(), Some("https://minio.local:9000"));
    assert!(a.force_path_style);
    assert_eq!(a.access_key_id.as_deref(), Some("AKIAGLOBAL"));
    assert_eq!(a.secret_access_key.as_deref(), Some(SECRET));
    assert_eq!((a.part_size, a.concurrency), (Some(5 << 20), Some(3)));
    assert_eq!(c.dbs[0].replica.sync_interval, Duration::from_secs(5));
    let Backend::S3(b) = &c.dbs[1].replica.backend else {
        panic!("not s3")
    };
    assert_eq!(
        b.bucket, "url-bkt",
        "a url's bucket beats the top-level default"
    );
    assert_eq!(
        b.region.as_deref(),
        Some("global-region"),
        "keys beat url parameters, as in Litestream"
    );
    assert!(!b.force_path_style);
    assert_eq!(c.dbs[1].replica.sync_interval, Duration::from_secs(2));
}

#[test]
fn env_expansion_happens_before_parsing() {
    let c = ok("dbs:\n  - path: $DIR/app.db\n    replica:\n      url: s3://${BUCKET}/app$UNSET\n");
    assert_eq!(c.dbs[0].path, Path::new("/data/app.db"));
    assert_eq!(
        (s3(&c).bucket.as_str(), s3(&c).path.as_str()),
        ("env-bucket", "app")
    );
}

#[test]
fn secrets_never_show() {
    let c = ok("secret-access-key: ${SECRET}\ndbs:\n  - path: /a.db\n    replica: {url: 's3://bkt/p?endpoint=http://u:pw@h:1'}\n");
    assert_eq!(s3(&c).secret_access_key.as_deref(), Some(SECRET));
    let shown = format!("{c:?}");
    assert!(!shown.contains(SECRET) && !shown.contains("pw"), "{shown}");
    let url = c.dbs[0].replica.url();
    assert!(!url.contains(SECRET) && !url.contains("pw"), "{url}");
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      url: s3://AKIA:${SECRET}@/p\n      secret-access-key: ${SECRET}\n");
    assert!(!e.contains(SECRET), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      path: s3://AKIA:${SECRET}@b/p\n");
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn replica_url_rendering() {
    let cases: &[(&str, &str)] = &[
        ("file:///r/x", "file:///r/x"),
        ("s3://bkt/p/q", "s3://bkt/p/q"),
        ("s3://bkt", "s3://bkt"),
        (
            "s3://bkt/p?endpoint=http://localhost:9000",
            "s3://bkt/p?endpoint=http%3A%2F%2Flocalhost%3A9000",
        ),
        (
            "s3://bkt/p?endpoint=http://h:1&forcePathStyle=false&region=eu",
            "s3://bkt/p?endpoint=http%3A%2F%2Fh%3A1&region=eu&forcePathStyle=false",
        ),
        (
            "s3://bkt/a%20b?forcePathStyle=true&skipVerify=true",
            "s3://bkt/a%20b?forcePathStyle=true&skipVerify=true",
        ),
    ];
    for (input, want) in cases {
        let r = parse_replica_url(input).unwrap();
        assert_eq!(r.url(), *want);
        let again = parse_replica_url(&r.url()).unwrap();
        assert_eq!(
            format!("{:?}", again.backend),
            format!("{:?}", r.backend),
            "{input}"
        );
    }
}

#[test]
fn zero_config_replica_url() {
    let db = from_replica_url(Path::new("/data/app.db"), "s3://bkt/app?region=r").unwrap();
    assert_eq!(db.path, Path::new("/data/app.db"));
    assert_eq!(db.replica.sync_interval, DEFAULT_SYNC_INTERVAL);
    assert!(
        matches!(&db.replica.backend, Backend::S3(s) if s.bucket == "bkt" && s.region.as_deref() == Some("r"))
    );
    let cwd = std::env::current_dir().unwrap();
    let db = from_replica_url(Path::new("rel/./app.db"), "file:///r").unwrap();
    assert_eq!(db.path, cwd.join("rel/app.db"));
    let e = from_replica_url(Path::new("/a.db"), "file://./r")
        .unwrap_err()
        .to_string();
    assert!(e.contains("file:///absolute/path"), "{e}");
    assert!(parse_duration("1x")
        .unwrap_err()
        .to_string()
        .starts_with("invalid duration \"1x\""));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
}

proptest! {
    /// Any duration written in Go syntax in the YAML arrives unchanged.
    #[test]
    fn durations_in_yaml_round_trip(nanos in 0u64..=(i64::MAX as u64)) {
        let d = Duration::from_nanos(nanos);
        let yaml = format!("dbs:\n  - path: /a.db\n    replica:\n      url: file:///r\n      sync-interval: \"{}\"\n", format_go_duration(d));
        prop_assert_eq!(ok(&yaml).dbs[0].replica.sync_interval, d);
    }

    /// S3 URLs built from arbitrary parts parse back to those parts and render back stably.
    #[test]
    fn s3_url_round_trip(bucket in "[a-z0-9][a-z0-9-]{2,20}", path in "([a-z0-9 _-]{1,8}/){0,3}[a-z0-9]{1,8}",
                         region in proptest::option::of("[a-z]{2}-[a-z]{4,9}-[1-9]"), fps in any::<bool>(), skip in any::<bool>()) {
        let mut url = format!("s3://{bucket}/{}?forcePathStyle={fps}&skipVerify={skip}", url::percent_encode(&path, true));
        if let Some(r) = &region { url.push_str(&format!("&region={r}")); }
        let r = parse_replica_url(&url).unwrap();
        let Backend::S3(s) = &r.backend else { panic!("not s3") };
        prop_assert_eq!((&s.bucket, &s.path, &s.region), (&bucket, &path, &region));
        prop_assert_eq!((s.force_path_style, s.skip_verify), (fps, skip));
        let again = parse_replica_url(&r.url()).unwrap();
        prop_assert_eq!(again.url(), r.url());
    }
}

#[test]
fn exec_and_heartbeat_keys() {
    let c = ok("exec: myapp serve --port 8080\nheartbeat-url: http://127.0.0.1:9/ping\nheartbeat-interval: 10s\n");
    assert_eq!(c.exec.as_deref(), Some("myapp serve --port 8080"));
    assert_eq!(c.heartbeat_url.as_deref(), Some("http://127.0.0.1:9/ping"));
    assert_eq!(
        c.heartbeat_interval,
        super::MIN_HEARTBEAT_INTERVAL,
        "raised to the minimum"
    );
    let c = ok("dbs: []\n");
    assert_eq!(c.exec, None);
    assert_eq!(c.heartbeat_interval, super::DEFAULT_HEARTBEAT_INTERVAL);
}

#[test]
fn an_unset_variable_is_named_when_a_required_key_ends_up_empty() {
    let cases = [
        // The variable on the line of the error.
        ("dbs:\n  - path: ${DB_PATH}\n    replica: {url: file:///r}\n", &["${DB_PATH}"][..]),
        ("dbs:\n  - path: /a.db\n    replica:\n      url: s3://${NO_BUCKET}/p\n", &["${NO_BUCKET}"]),
        // Not on the error's line: every unset variable is named.
        ("dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: $NO_BUCKET\n      region: $NO_REGION\n",
            &["${NO_BUCKET}", "${NO_REGION}"]),
    ];
    for (yaml, names) in cases {
        let e = err(yaml);
        for n in names {
            assert!(e.contains("environment variable"), "{e}");
            assert!(e.contains(n), "want {n} in: {e}");
        }
        assert!(e.contains("not set"), "{e}");
    }
    // A variable that is set is never blamed, and an unset one on another line than the
    // error is not named when one on the error's line is.
    let e = err("addr: ${NO_ADDR}:x\ndbs:\n  - path: ${DB_PATH}\n    replica: {url: file:///r}\n");
    assert!(e.contains("${NO_ADDR}") && !e.contains("DB_PATH"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica: {url: \"s3://${BUCKET}\", bucket: x}\n");
    assert!(!e.contains("not set"), "{e}");
    // Loading succeeds when the unset variable was optional.
    ok("dbs:\n  - path: /a.db\n    replica: {url: file:///r, region: $NO_REGION}\n");
}

#[test]
fn deep_nesting_is_refused_fast_with_a_named_error() {
    // 100 000 levels under an ignored key: minutes in the YAML parser, one pass here.
    let n = 100_000;
    let yaml = format!("dbs: []\nignored: {}{}\n", "[".repeat(n), "]".repeat(n));
    match parse(&yaml) {
        Err(ConfigError::TooDeep { line, limit, .. }) => assert_eq!((line, limit), (2, 128)),
        other => panic!("{other:?}"),
    }
    let e = err(&format!("x: {}\n", "{a: ".repeat(200)));
    assert!(e.starts_with("litestream.yml: line 1: brackets"), "{e}");
    // Nesting within the bound still loads.
    ok(&format!(
        "dbs: []\nignored: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    ));
}

mod loading;

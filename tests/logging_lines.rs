//! The log lines users grep for, through `logging:` and `LOG_LEVEL`: a failing replica logs
//! `sync failed; will retry` with the object key and what to do, the lag passing `lag-alert`
//! logs a warning, and the recovery logs `stream resumed`.
//!
//! Needs: the extension (`LITESTREAM_SO`), `/usr/bin/python3`.

use std::path::Path;

use litestream_tests::*;

#[test]
fn json_logs_of_a_failing_then_recovering_replica() {
    let s = Scratch::new("logging");
    let db = s.join("app.db");
    // The replica's parent is a regular file: it cannot be created (not even by root) until
    // the file is removed.
    let blocker = s.write("blocker", "not a directory\n");
    let replica = blocker.join("replica");
    // `level: error` in the file, `LOG_LEVEL=info` in the environment: the environment wins.
    let cfg = Config::new()
        .extra("logging: {level: error, type: json}")
        .extra("lag-alert: 100ms")
        .db(&db, &replica)
        .sync_interval("0")
        .write(&s.join("litestream.yml"));
    let code = r#"
import json, time
m = sqlite3.connect(":memory:")
m.enable_load_extension(True)
m.load_extension(SO)
c = sqlite3.connect("file:%s?vfs=litestream" % ARGS[0], uri=True)
c.execute("create table t(x)")
c.execute("insert into t values (1)")
c.commit()
deadline = time.time() + 120
while True:
    st = json.loads(c.execute("select litestream_status()").fetchone()[0])
    # Long enough past lag-alert for the once-a-second monitor to have seen it.
    if st["last_error"] and st["lag"] > 2.5 and st["lag_alert_exceeded"]:
        break
    assert time.time() < deadline, st
    time.sleep(0.05)
os.remove(ARGS[1])
print(json.loads(c.execute("PRAGMA litestream.checkpoint").fetchone()[0])["replicated_txid"])
"#;
    let env: [(&str, &Path); 2] = [
        ("LITESTREAM_CONFIG", &cfg),
        ("LOG_LEVEL", Path::new("info")),
    ];
    let out = python(
        code,
        &[&db.to_string_lossy(), &blocker.to_string_lossy()],
        &env,
    )
    .ok();
    assert_eq!(out.stdout, "0000000000000001\n", "{out}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')),
        "every line is a JSON object: {out}"
    );
    let find = |msg: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("\"message\":\"{msg}")))
            .unwrap_or_else(|| panic!("no {msg:?} line in:\n{}", out.stderr))
            .to_string()
    };
    let failed = find("sync failed; will retry");
    assert!(failed.contains("\"level\":\"WARN\""), "{failed}");
    assert!(
        failed.contains(&format!("{}/ltx/0", replica.display())),
        "names the object key: {failed}"
    );
    assert!(
        failed.contains("\"hint\":\"the replica is unreachable or failing; commits stay staged in"),
        "says what to do: {failed}"
    );
    let alert = find("replication lag exceeds lag-alert");
    assert!(alert.contains("\"lag_alert\":\"100ms\""), "{alert}");
    let resumed = find("stream resumed");
    assert!(
        resumed.contains("\"txid\":\"0000000000000001\""),
        "{resumed}"
    );
    assert!(
        find("replicating").contains("\"level\":\"INFO\""),
        "LOG_LEVEL=info wins"
    );
}

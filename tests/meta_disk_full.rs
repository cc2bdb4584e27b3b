//! A full meta disk: the meta directory on a 256 KiB tmpfs, a Python writer (Debian's python3
//! loading the extension) commits far more than fits. Every commit must succeed (the data
//! waits in the WAL), and the "capture failed" error must be rate-limited: the first failure
//! is logged, then at most one line a minute carrying the count of failures not logged, not
//! one line per commit. Skipped, loudly, where this machine does not allow mounting a tmpfs.
//!
//! Needs: root (for `mount -t tmpfs`), the extension (`LITESTREAM_SO`), `/usr/bin/python3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use litestream_tests::*;

/// Commits of 4 KB each: about five times what the tmpfs holds.
const COMMITS: usize = 300;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a 256 KiB tmpfs at `dir`; `None` (after saying why) when the machine refuses.
    fn mount(dir: &Path, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED {test}: `mount -t tmpfs` fails on this machine (needs root); the full \
                 meta disk is untested here (the rate limiter has unit tests)"
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

const WRITER: &str = r#"
db, commits = ARGS[0], int(ARGS[1])
c = sqlite3.connect(db, isolation_level=None, timeout=20)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(commits):
    c.execute("INSERT INTO t(v) VALUES (randomblob(4000))")
print("rows=%d" % c.execute("SELECT count(*) FROM t").fetchone()[0])
c.close()
"#;

#[test]
fn a_full_meta_disk_logs_capture_errors_rate_limited_and_commits_succeed() {
    let test = "a_full_meta_disk_logs_capture_errors_rate_limited_and_commits_succeed";
    let s = Scratch::new("meta-disk-full");
    let meta = s.join("meta");
    let Some(_tmpfs) = Tmpfs::mount(&meta, test) else {
        return;
    };
    let db = s.join("app.db");
    let cfg = Config::new()
        .db(&db, &s.join("replica"))
        .sync_interval("100ms")
        .db_key("meta-path", &meta.to_string_lossy())
        .write(&s.join("litestream.yml"));
    let out = python(
        &format!("{PY_LOAD_EXTENSION}{WRITER}"),
        &[&db.to_string_lossy(), &COMMITS.to_string()],
        &[("LITESTREAM_CONFIG", &cfg)],
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains(&format!("rows={COMMITS}")),
        "every commit must succeed: {out}"
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("capture failed; will retry at the next commit"))
        .collect();
    assert!(
        !errors.is_empty(),
        "precondition: the tmpfs must fill up and captures fail\n{out}"
    );
    // At most one line a minute: far fewer than the failing commits, however slow the run.
    assert!(
        errors.len() < COMMITS / 10,
        "{} capture errors logged for {COMMITS} commits: not rate-limited\n{out}",
        errors.len()
    );
    assert!(
        errors[0].contains("No space left on device") && errors[0].contains("suppressed=0"),
        "the first failure is logged with its cause: {}",
        errors[0]
    );
    assert_integrity(&db, "after the full meta disk");
}

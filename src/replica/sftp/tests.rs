//! The `sftp` backend against OpenSSH's sshd (Debian `openssh-server`) on a free loopback port,
//! started by `scripts/sshd-test-server.sh` with generated host and client keys.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::*;
use crate::config::HostKeyCheck;
use crate::replica::conformance;
use crate::replica::test_servers::{self, Server};

struct Sshd {
    server: Server,
    dir: PathBuf,
}

fn sshd() -> Option<&'static Sshd> {
    static SERVER: OnceLock<Option<Sshd>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = test_servers::find_tool("sshd", &[PathBuf::from("/usr/sbin/sshd")])
            else {
                test_servers::missing(
                    "OpenSSH sshd",
                    "apt-get install openssh-server; .ci/run installs it",
                );
                return None;
            };
            let dir = std::env::temp_dir().join(format!("litestream-sshd-{}", std::process::id()));
            let script = test_servers::repo_root().join("scripts/sshd-test-server.sh");
            let d2 = dir.clone();
            std::env::set_var("SSHD", &bin);
            let server = test_servers::spawn(&script, &move |port| {
                vec![d2.display().to_string(), port.to_string()]
            });
            Some(Sshd { server, dir })
        })
        .as_ref()
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

fn config(s: &Sshd, path: &str) -> SftpConfig {
    SftpConfig {
        host: "127.0.0.1".into(),
        port: s.server.port,
        user: user(),
        password: None,
        key_path: Some(s.dir.join("client_ed25519").display().to_string()),
        host_key: HostKeyCheck::KnownHosts(Some(s.dir.join("known_hosts").display().to_string())),
        path: path.into(),
    }
}

/// A replica in a new directory, or `None` when sshd is not installed.
fn fresh() -> Option<(SftpReplica, tempfile::TempDir)> {
    let s = sshd()?;
    let root = tempfile::tempdir().expect("replica dir");
    let path = root.path().join("replica").display().to_string();
    Some((SftpReplica::new(&config(s, &path)), root))
}

#[test]
fn conformance_suite() {
    let Some((r, _root)) = fresh() else { return };
    let plant =
        |level: u8, name: &str, data: &[u8]| r.write_raw(&format!("ltx/{level}/{name}"), data);
    conformance::run_all(&r, &plant);
}

#[test]
fn layout_and_times_match_official_litestream() {
    let Some((r, root)) = fresh() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    let mut data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    data[..4].copy_from_slice(crate::ltx::MAGIC);
    data[32..40].copy_from_slice(&1_700_000_000_123i64.to_be_bytes());
    std::fs::write(&src, &data).unwrap();
    r.put(3, 1, 0x2a, &src, 1_700_000_000_123).unwrap();
    let file = root
        .path()
        .join("replica/ltx/3/0000000000000001-000000000000002a.ltx");
    assert!(
        std::fs::read(&file).unwrap() == data,
        "stored content differs"
    );
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let mut files = r.list(3).unwrap();
    assert_eq!(files[0].created_at, mtime);
    r.resolve_timestamps(&mut files).unwrap();
    assert_eq!(
        files[0].created_at,
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    );
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file may be left: {names:?}");
}

#[test]
fn a_host_key_that_does_not_match_is_fatal_and_says_what_to_do() {
    let Some(s) = sshd() else { return };
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let cfg = SftpConfig {
        host_key: HostKeyCheck::Fixed(other.into()),
        ..config(s, "x")
    };
    let err = SftpReplica::new(&cfg).list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    assert!(err.to_string().contains("`host-key`"), "{err}");
    // The right key line (the server's .pub file) is accepted.
    let line = std::fs::read_to_string(s.dir.join("host_ed25519.pub")).unwrap();
    let cfg = SftpConfig {
        host_key: HostKeyCheck::Fixed(line),
        ..config(s, "x")
    };
    SftpReplica::new(&cfg)
        .list(0)
        .expect("the server's own key");
}

#[test]
fn an_unknown_host_is_fatal_unless_skipping_is_chosen() {
    let Some(s) = sshd() else { return };
    let empty = tempfile::NamedTempFile::new().unwrap();
    let cfg = SftpConfig {
        host_key: HostKeyCheck::KnownHosts(Some(empty.path().display().to_string())),
        ..config(s, "x")
    };
    let err = SftpReplica::new(&cfg).list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    assert!(err.to_string().contains("skip-host-key-check"), "{err}");
    let cfg = SftpConfig {
        host_key: HostKeyCheck::Skip,
        ..config(s, "x")
    };
    SftpReplica::new(&cfg)
        .list(0)
        .expect("explicitly skipped check");
}

/// `ssh-keyscan` prints lines without a comment: such a `known_hosts` line is understood.
#[test]
fn a_known_hosts_line_without_a_comment_is_understood() {
    let Some(s) = sshd() else { return };
    let line = std::fs::read_to_string(s.dir.join("known_hosts")).unwrap();
    let bare: Vec<&str> = line.split_whitespace().take(3).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{}\n", bare.join(" "))).unwrap();
    let cfg = SftpConfig {
        host_key: HostKeyCheck::KnownHosts(Some(file.path().display().to_string())),
        ..config(s, "x")
    };
    SftpReplica::new(&cfg)
        .list(0)
        .expect("a bare known_hosts line");
}

#[test]
fn a_refused_password_is_fatal_and_never_shown() {
    let Some(s) = sshd() else { return };
    let secret = "not-the-password-3c9e";
    let cfg = SftpConfig {
        key_path: None,
        password: Some(secret.into()),
        ..config(s, "x")
    };
    let r = SftpReplica::new(&cfg);
    let err = r.list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    let text = format!("{err} {err:?} {}", r.describe());
    assert!(!text.contains(secret), "{text}");
}

#[test]
fn a_stale_lock_left_by_a_killed_writer_is_broken() {
    let Some((r, root)) = fresh() else { return };
    let lock = root.path().join("replica/.lease.json.lock");
    std::fs::create_dir_all(&lock).unwrap();
    let old = std::fs::File::open(&lock).unwrap();
    old.set_modified(SystemTime::now() - LOCK_STALE_FOR_TESTS)
        .unwrap();
    r.write_object("lease.json", b"{}", WriteCondition::IfAbsent)
        .expect("a stale lock is broken");
    assert!(!lock.exists());
}

const LOCK_STALE_FOR_TESTS: Duration = Duration::from_secs(3600);

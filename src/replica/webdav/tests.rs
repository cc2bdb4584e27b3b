//! The `webdav` backend against WsgiDAV 4.4.0 on cheroot (`scripts/webdav-server.py`, from the
//! repo's `.venv`), which supports dead properties and locks.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::*;
use crate::replica::conformance;
use crate::replica::test_servers::{self, Server};

const USER: &str = "replicator";
const PASSWORD: &str = "dav-secret-7c1e";

/// The server and the directory it shares.
fn server() -> Option<&'static (Server, PathBuf)> {
    static SERVER: OnceLock<Option<(Server, PathBuf)>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let python = test_servers::repo_root().join(".venv/bin/python");
            let has_wsgidav = python.is_file()
                && std::process::Command::new(&python)
                    .args(["-c", "import wsgidav, cheroot"])
                    .status()
                    .is_ok_and(|s| s.success());
            if !has_wsgidav {
                test_servers::missing(
                    "WsgiDAV",
                    "scripts/setup-test-env.sh installs PyPI wsgidav and cheroot into .venv",
                );
                return None;
            }
            // Shared by every test of this process; kept until the process exits.
            let root = std::env::temp_dir().join(format!("litestream-dav-{}", std::process::id()));
            std::fs::create_dir_all(&root).expect("dav root");
            let script = test_servers::repo_root().join("scripts/webdav-server.py");
            let r = root.clone();
            let srv = test_servers::spawn(&python, &move |port| {
                vec![
                    script.display().to_string(),
                    r.display().to_string(),
                    USER.to_string(),
                    PASSWORD.to_string(),
                    port.to_string(),
                ]
            });
            Some((srv, root))
        })
        .as_ref()
}

fn quick() -> Tuning {
    Tuning {
        attempt_timeout: std::time::Duration::from_secs(10),
        ..Tuning::default()
    }
}

fn config(port: u16, path: &str, password: &str) -> WebdavConfig {
    WebdavConfig {
        url: format!("http://127.0.0.1:{port}"),
        username: Some(USER.into()),
        password: Some(password.into()),
        path: path.into(),
    }
}

/// A replica under a new collection, or `None` when WsgiDAV is not installed.
fn fresh(sub: &str) -> Option<WebdavReplica> {
    let (srv, _) = server()?;
    let top = format!("r{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    Some(WebdavReplica::with_tuning(
        &config(srv.port, &join(&top, sub), PASSWORD),
        quick(),
    ))
}

fn plant(r: &WebdavReplica) -> impl Fn(u8, &str, &[u8]) + '_ {
    move |level, name, data| {
        let path = format!("{}/{name}", r.level_dir(level));
        let req = Request::new(Method::PUT, r.url(&path)).body(data.to_vec());
        r.put_creating_parents(&path, req).expect("plant");
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
fn conformance_suite_at_the_collection_root() {
    let Some(r) = fresh("") else { return };
    conformance::run_all(&r, &plant(&r));
}

#[test]
fn layout_matches_official_litestream_and_uploads_leave_no_temp_files() {
    let Some(r) = fresh("db") else { return };
    let (_, root) = server().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.ltx");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    r.put(3, 1, 0x2a, &src, 1_700_000_000_123).unwrap();
    let on_disk = root.join(&r.cfg.path).join("ltx/3");
    let names: Vec<String> = std::fs::read_dir(&on_disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["0000000000000001-000000000000002a.ltx"]);
    assert_eq!(
        std::fs::read(on_disk.join("0000000000000001-000000000000002a.ltx")).unwrap(),
        data
    );
    let files = r.list(3).unwrap();
    assert_eq!(
        files[0].created_at,
        UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)
    );
}

#[test]
fn files_written_in_place_by_another_client_list_with_their_modification_time() {
    let Some(r) = fresh("foreign") else { return };
    plant(&r)(0, "0000000000000001-0000000000000001.ltx", b"x");
    let files = r.list(0).unwrap();
    assert_eq!(files.len(), 1);
    let age = std::time::SystemTime::now()
        .duration_since(files[0].created_at)
        .unwrap_or_default();
    assert!(age < std::time::Duration::from_secs(3600), "{files:?}");
}

#[test]
fn a_wrong_password_is_fatal_and_never_shown() {
    let Some((srv, _)) = server() else { return };
    let wrong = "not-the-password-93ab";
    let r = WebdavReplica::with_tuning(&config(srv.port, "x", wrong), quick());
    let err = r.list(0).unwrap_err();
    assert!(matches!(err, ReplicaError::Fatal { .. }), "{err:?}");
    let text = format!("{err} {err:?} {}", r.describe());
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    assert!(
        text.contains("401") && text.contains("webdav-password"),
        "{text}"
    );
}

#[test]
fn a_lock_left_by_another_client_delays_but_does_not_break_writes() {
    let Some(r) = fresh("locked") else { return };
    r.write_object("lease.json", b"a", WriteCondition::IfAbsent)
        .unwrap();
    // Another client holds the companion lock for a moment.
    let token = objects_lock_for_test(&r, "lease.json");
    let holder = std::thread::spawn({
        let cfg = r.cfg.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let other = WebdavReplica::with_tuning(&cfg, quick());
            objects_unlock_for_test(&other, "lease.json", &token);
        }
    });
    let v = r
        .write_object("lease.json", b"b", WriteCondition::Always)
        .expect("write after the lock is released");
    holder.join().unwrap();
    assert_eq!(r.read_object("lease.json").unwrap().version, v);
}

#[test]
fn a_lock_granted_but_whose_answer_was_lost_is_found_and_released() {
    let Some(r) = fresh("lost-lock") else { return };
    r.write_object("lease.json", b"a", WriteCondition::IfAbsent)
        .unwrap();
    let token = super::locked_objects::tests_support::lock_and_lose_the_answer(
        &r,
        "lease.json",
        "litestream-00000000deadbeef",
    )
    .expect("our own lock is found through lockdiscovery");
    objects_unlock_for_test(&r, "lease.json", &token);
    // Released: no active lock is left, and a conditional write goes through.
    assert!(super::locked_objects::tests_support::active_lock(
        &r,
        "lease.json",
        "litestream-00000000deadbeef"
    )
    .is_none());
    r.write_object("lease.json", b"b", WriteCondition::Always)
        .unwrap();
}

fn objects_lock_for_test(r: &WebdavReplica, name: &str) -> String {
    super::locked_objects::tests_support::lock(r, name)
}

fn objects_unlock_for_test(r: &WebdavReplica, name: &str, token: &str) {
    super::locked_objects::tests_support::unlock(r, name, token)
}

#[test]
fn propfind_answers_are_parsed() {
    let xml = r#"<?xml version="1.0" encoding="utf-8" ?>
    <D:multistatus xmlns:D="DAV:" xmlns:L="urn:x-litestream:">
     <D:response><D:href>/r/ltx/0/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
     <D:response><D:href>http://h:1/r/ltx/0/0000000000000001-0000000000000002.ltx</D:href><D:propstat><D:prop>
       <D:getcontentlength>7</D:getcontentlength><D:getlastmodified>Wed, 09 Sep 2009 09:20:02 GMT</D:getlastmodified></D:prop></D:propstat></D:response>
     <D:response><D:href>/r/ltx/0/0000000000000003-0000000000000003.ltx</D:href><D:propstat><D:prop>
       <L:litestream-timestamp>2009-09-09T09:20:02.5Z</L:litestream-timestamp><D:getcontentlength>1</D:getcontentlength></D:prop></D:propstat></D:response>
     <D:response><D:href>/r/ltx/0/.0000000000000004-0000000000000004.ltx.tmp-1</D:href></D:response>
    </D:multistatus>"#;
    let files = parse_listing(xml, 0).unwrap();
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
    assert_eq!(href_name("/a/b%20c"), Some("b c".to_string()));
    assert_eq!(href_name("/a/"), None);
}

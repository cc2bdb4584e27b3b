//! How each test server is used by the shared backend scenarios
//! ([`crate::backend_scenarios`]): one [`BackendUnderTest`] per replica type. A location is
//! the container, bucket or directory a scenario writes to; the replica path inside a bucket
//! or container is [`DB_PATH`].

use std::path::Path;

use crate::backend_scenarios::BackendUnderTest;
use crate::{Azurite, FakeGcs, NatsServer, S3Server, Sshd, WsgiDav};

/// The replica path inside a container or bucket.
pub const DB_PATH: &str = "tenant/app.db";
/// [`DB_PATH`] as the start of object names.
const DB_PATH_ROOT: &str = "tenant/app.db/";

/// A unique name starting with `tag`.
fn unique(tag: &str) -> String {
    format!("{tag}-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

/// Every file under `dir`, relative to it, sorted (stores that keep files in a directory).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

impl BackendUnderTest for S3Server {
    fn server(&self) -> (&'static str, u16) {
        ("s3", self.port)
    }
    fn fresh_location(&self, tag: &str) -> String {
        self.new_bucket(tag)
    }
    fn replica_keys(&self, bucket: &str, port: u16) -> String {
        format!(
            "      type: s3\n      bucket: {bucket}\n      path: {DB_PATH}\n      \
             endpoint: http://127.0.0.1:{port}\n      region: {}\n      \
             access-key-id: ${{TEST_S3_KEY_ID}}\n      secret-access-key: ${{TEST_S3_SECRET}}\n",
            crate::s3::REGION
        )
    }
    fn objects(&self, bucket: &str) -> Vec<String> {
        self.keys(bucket, DB_PATH_ROOT)
    }
    /// The key id and secret, as `${…}` variables and as the SDK's own (the official binary
    /// reads `AWS_*` too).
    fn extra_env(&self, _port: u16) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = crate::credential_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("TEST_S3_KEY_ID".into(), crate::s3::ACCESS_KEY_ID.into()));
        env.push(("TEST_S3_SECRET".into(), crate::s3::SECRET_ACCESS_KEY.into()));
        env
    }
    fn level_root(&self) -> &'static str {
        DB_PATH_ROOT
    }
    fn level0_dir(&self) -> &'static str {
        "0000"
    }
    fn secrets(&self) -> Vec<String> {
        vec![
            crate::s3::SECRET_ACCESS_KEY.into(),
            crate::s3::ACCESS_KEY_ID.into(),
        ]
    }
}

impl BackendUnderTest for Azurite {
    fn server(&self) -> (&'static str, u16) {
        ("abs", self.port)
    }
    fn fresh_location(&self, tag: &str) -> String {
        self.new_container(tag)
    }
    fn replica_keys(&self, container: &str, port: u16) -> String {
        format!(
            "      type: abs\n      account-name: {}\n      account-key: ${{TEST_ABS_KEY}}\n      \
             bucket: {container}\n      path: {DB_PATH}\n      endpoint: {}\n",
            crate::azurite::ACCOUNT,
            Azurite::endpoint_on(port)
        )
    }
    fn objects(&self, container: &str) -> Vec<String> {
        self.blobs(container, DB_PATH_ROOT)
    }
    fn secret(&self) -> Option<(&'static str, &'static str)> {
        Some(("TEST_ABS_KEY", crate::azurite::ACCOUNT_KEY))
    }
    fn level_root(&self) -> &'static str {
        DB_PATH_ROOT
    }
}

impl BackendUnderTest for FakeGcs {
    fn server(&self) -> (&'static str, u16) {
        ("gs", self.port)
    }
    fn fresh_location(&self, tag: &str) -> String {
        self.new_bucket(tag)
    }
    fn replica_keys(&self, bucket: &str, _port: u16) -> String {
        format!("      type: gs\n      bucket: {bucket}\n      path: {DB_PATH}\n")
    }
    fn objects(&self, bucket: &str) -> Vec<String> {
        FakeGcs::objects(self, bucket, DB_PATH_ROOT)
    }
    /// Both binaries find the emulator (or the proxy in front of it) through
    /// `STORAGE_EMULATOR_HOST`; no credentials.
    fn extra_env(&self, port: u16) -> Vec<(String, String)> {
        vec![("STORAGE_EMULATOR_HOST".into(), format!("127.0.0.1:{port}"))]
    }
    fn level_root(&self) -> &'static str {
        DB_PATH_ROOT
    }
}

impl BackendUnderTest for WsgiDav {
    fn server(&self) -> (&'static str, u16) {
        ("webdav", self.port)
    }
    /// A new top collection; the replica is `<top>/app.db`.
    fn fresh_location(&self, tag: &str) -> String {
        format!("{}/app.db", unique(tag))
    }
    fn replica_keys(&self, path: &str, port: u16) -> String {
        format!(
            "      type: webdav\n      webdav-url: {}\n      webdav-username: {}\n      \
             webdav-password: ${{TEST_DAV_PASSWORD}}\n      path: {path}\n",
            WsgiDav::url_on(port),
            crate::wsgidav::USER
        )
    }
    fn objects(&self, path: &str) -> Vec<String> {
        files_under(&self.root.join(path))
    }
    fn secret(&self) -> Option<(&'static str, &'static str)> {
        Some(("TEST_DAV_PASSWORD", crate::wsgidav::PASSWORD))
    }
}

impl BackendUnderTest for NatsServer {
    fn server(&self) -> (&'static str, u16) {
        ("nats", self.port)
    }
    fn fresh_location(&self, tag: &str) -> String {
        self.new_bucket(tag)
    }
    /// Credentials are keys: the official binary ignores them in a nats:// URL.
    fn replica_keys(&self, bucket: &str, port: u16) -> String {
        format!(
            "      type: nats\n      url: nats://127.0.0.1:{port}/{bucket}\n      username: {}\n      \
             password: ${{TEST_NATS_PASSWORD}}\n",
            crate::natsserver::USER
        )
    }
    fn objects(&self, bucket: &str) -> Vec<String> {
        NatsServer::objects(self, bucket)
    }
    fn secret(&self) -> Option<(&'static str, &'static str)> {
        Some(("TEST_NATS_PASSWORD", crate::natsserver::PASSWORD))
    }
}

impl BackendUnderTest for Sshd {
    fn server(&self) -> (&'static str, u16) {
        ("sftp", self.port)
    }
    /// A new directory (absolute path) under the server's root.
    fn fresh_location(&self, tag: &str) -> String {
        self.root.join(unique(tag)).display().to_string()
    }
    /// Key login with the server's host key pinned, as the official binary takes them.
    fn replica_keys(&self, dir: &str, port: u16) -> String {
        format!(
            "      type: sftp\n      host: 127.0.0.1:{port}\n      user: {}\n      \
             key-path: {}\n      host-key: {}\n      path: {dir}\n",
            Sshd::user(),
            self.key_path().display(),
            self.host_key()
        )
    }
    fn objects(&self, dir: &str) -> Vec<String> {
        files_under(Path::new(dir))
    }
    /// Key login: the private key's lines must never be logged.
    fn secrets(&self) -> Vec<String> {
        let key = std::fs::read_to_string(self.key_path()).unwrap_or_default();
        key.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_string)
            .collect()
    }
}

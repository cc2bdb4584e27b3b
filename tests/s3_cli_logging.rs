//! Our CLI against S3 (moto on loopback) when the S3 runtime thread logs: with `skipVerify`
//! (its TLS warning) and with no credentials in the environment (the AWS default chain's
//! warnings). The CLI once held the stderr lock for the whole command while waiting for that
//! thread, which then blocked on the lock: `ltx`, `restore` and `read-replica` hung forever.
//! Each command here must end on its own; a hang is detected by a generous bound and reported.
//!
//! Needs: our CLI and moto (`make test` provides them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use litestream_tests::s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use litestream_tests::*;

/// Far beyond what any of these commands needs against moto on loopback (the default chain's
/// instance-metadata probes included); a command still running then has hung.
const HANG_BOUND: Duration = Duration::from_secs(120);

/// Runs our CLI with exactly `env` (plus `PATH`), killing it if it outlives [`HANG_BOUND`].
/// Returns (exit code, stdout, stderr); panics naming the command when it hung.
fn run_bounded(args: &[&str], env: &[(&str, &str)], home: &Path) -> (i32, String, String) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut cmd = Command::new(our_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // No profile files of the machine's user: the default chain finds nothing.
        .env("HOME", home)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let what = format!("litestream {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut status = None;
    wait_until(HANG_BOUND, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let stderr = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} hung (killed after {HANG_BOUND:?}); stderr so far:\n{}",
            stderr()
        );
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    (status.code().unwrap_or(-1), stdout, stderr())
}

fn credentials() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_REGION", REGION),
    ]
}

#[test]
fn commands_with_skip_verify_answer() {
    let s = Scratch::new("s3-cli-skip-verify");
    let server = S3Server::shared();
    let bucket = server.new_bucket("cli-skipverify");
    let url = format!(
        "{}&skipVerify=true",
        s3_url(&bucket, "app.db", &server.endpoint())
    );
    let (code, out, err) = run_bounded(&["ltx", &url], &credentials(), s.path());
    assert_eq!(code, 0, "ltx on an empty replica:\n{out}\n{err}");
    assert!(
        err.contains("skip-verify"),
        "the skip-verify warning is logged (it is what used to hang):\n{err}"
    );
    let restored = s.join("out.db");
    let (code, _, err) = run_bounded(
        &["restore", "-o", &restored.to_string_lossy(), &url],
        &credentials(),
        s.path(),
    );
    assert_eq!(code, 1, "restore of an empty replica fails:\n{err}");
    assert!(err.contains("Error:"), "{err}");
}

#[test]
fn commands_without_credentials_answer() {
    let s = Scratch::new("s3-cli-no-credentials");
    let server = S3Server::shared();
    let bucket = server.new_bucket("cli-nocreds");
    let url = s3_url(&bucket, "app.db", &server.endpoint());
    // The default chain (profile, web identity, ECS, instance metadata) finds nothing here:
    // the command must end with an error, whatever the chain logs on the way.
    let (code, out, err) = run_bounded(&["ltx", &url], &[("AWS_REGION", REGION)], s.path());
    assert!(
        code == 0 || err.contains("Error:"),
        "ltx without credentials ended with {code}:\n{out}\n{err}"
    );
    let restored = s.join("out.db");
    let (code, _, err) = run_bounded(
        &["restore", "-o", &restored.to_string_lossy(), &url],
        &[("AWS_REGION", REGION)],
        s.path(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Error:"), "{err}");
}

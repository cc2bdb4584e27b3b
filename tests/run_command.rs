//! `litestream run -config F -- CMD ARGS…`: CMD runs with the extension preloaded and the
//! configuration set, signals are forwarded, and its exit status is ours.
//!
//! Needs: our CLI and the extension (`LITESTREAM_BIN`, `LITESTREAM_SO`), `sqlite3`,
//! `/usr/bin/python3`, the official binary (restore check).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use litestream_tests::paths::{python3, sqlite3_shell};
use litestream_tests::*;

fn run_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(our_bin());
    cmd.arg("run")
        .args(args)
        .env("LITESTREAM_LIBRARY", so_path())
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("LD_PRELOAD");
    cmd
}

#[test]
fn runs_the_command_replicated_and_returns_its_status() {
    let s = Scratch::new("run-cmd");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .sync_interval("1h")
        .write(&s.join("litestream.yml"));
    let cfg_arg = cfg.to_string_lossy().into_owned();
    let shell = sqlite3_shell().to_string_lossy().into_owned();
    let sql = "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t;";
    let out = run_cmd(&[
        "-config",
        &cfg_arg,
        "--",
        &shell,
        &db.to_string_lossy(),
        sql,
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    assert_restores_to(&s, &replica, &db, "run");

    let out = run_cmd(&["-config", &cfg_arg, "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");

    // The environment the command sees.
    let out = run_cmd(&[
        "-config",
        &cfg_arg,
        "--",
        "sh",
        "-c",
        "echo \"$LD_PRELOAD|$LITESTREAM_CONFIG\"",
    ])
    .output()
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "{}|{}",
            so_path().canonicalize().unwrap().display(),
            cfg.display()
        )
    );
}

#[test]
fn forwards_termination_and_user_signals() {
    let s = Scratch::new("run-signals");
    let cfg = Config::new()
        .db(&s.join("app.db"), &s.join("replica"))
        .write(&s.join("litestream.yml"));
    let py = python3().to_string_lossy().into_owned();
    // Short sleeps: a signal handled just before a long `time.sleep` starts would only be
    // acted on when that sleep ends (the handler runs between bytecodes).
    let code = "import signal, sys, time\n\
                signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n\
                signal.signal(signal.SIGINT, lambda *a: sys.exit(4))\n\
                signal.signal(signal.SIGHUP, lambda *a: sys.exit(5))\n\
                signal.signal(signal.SIGQUIT, lambda *a: sys.exit(6))\n\
                signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))\n\
                signal.signal(signal.SIGUSR2, lambda *a: sys.exit(8))\n\
                print('ready', flush=True)\n\
                for _ in range(2400): time.sleep(0.05)\n";
    // SIGHUP once killed `run` alone (exit 129) and orphaned the program.
    for (sig, want) in [
        (libc::SIGTERM, 3),
        (libc::SIGINT, 4),
        (libc::SIGHUP, 5),
        (libc::SIGQUIT, 6),
        (libc::SIGUSR1, 7),
        (libc::SIGUSR2, 8),
    ] {
        let mut child = run_cmd(&["-config", &cfg.to_string_lossy(), "--", &py, "-c", code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        signal(&child, sig);
        let mut status = None;
        wait_until(Duration::from_secs(60), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            panic!("litestream run did not exit after signal {sig}");
        };
        assert_eq!(status.code(), Some(want), "signal {sig}");
    }
}

#[test]
fn errors_say_what_to_do() {
    let out = run_cmd(&["-library", "/nonexistent/liblitestream.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("library not found: /nonexistent/liblitestream.so"),
        "{err}"
    );

    let out = run_cmd(&["--"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command given"));

    let s = Scratch::new("run-errors");
    let cfg = s.write(
        "litestream.yml",
        "dbs:\n  - path: /x.db\n    replica: {type: nope}\n",
    );
    let out = run_cmd(&["-config", &cfg.to_string_lossy(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("litestream.yml"),
        "names the config file: {err}"
    );

    let cfg = Config::new()
        .db(&s.join("a.db"), &s.join("r"))
        .write(&s.join("ok.yml"));
    let out = run_cmd(&[
        "-config",
        &cfg.to_string_lossy(),
        "--",
        "/nonexistent/program",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn finds_the_library_next_to_the_binary() {
    let (bin, so) = (our_bin(), so_path());
    assert_eq!(
        bin.parent(),
        so.parent(),
        "this test expects the CLI and the extension in one directory (as cargo builds them)"
    );
    let s = Scratch::new("run-default-lib");
    let cfg = Config::new()
        .db(&s.join("a.db"), &s.join("r"))
        .write(&s.join("litestream.yml"));
    let out = Command::new(bin)
        .args([
            "run",
            "-config",
            &cfg.to_string_lossy(),
            "--",
            "sh",
            "-c",
            "echo $LD_PRELOAD",
        ])
        .env_remove("LITESTREAM_LIBRARY")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        so.canonicalize().unwrap().display().to_string()
    );
}

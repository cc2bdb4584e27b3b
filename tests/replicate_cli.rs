//! `litestream replicate` (`-exec`, the `exec:` key, the positional form, the flags) and the
//! rest of the official CLI (`status`, `reset`, `wal`, `snapshots`, `generations`, `databases`,
//! `help`, `-no-expand-env`), checked against real replicas and against the official 0.5.17
//! binary's flags, texts and JSON.
//!
//! Needs: our CLI and the extension (`LITESTREAM_BIN`, `LITESTREAM_SO`), `sqlite3`, the
//! official binary (`LITESTREAM_OFFICIAL`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use litestream_tests::paths::sqlite3_shell;
use litestream_tests::procs::run_with_input;
use litestream_tests::*;

fn ours(args: &[&str]) -> Command {
    let mut cmd = Command::new(our_bin());
    cmd.args(args)
        .env("LITESTREAM_LIBRARY", so_path())
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("LD_PRELOAD");
    cmd
}

fn out(cmd: Command) -> Output {
    run_with_input(cmd, "litestream (ours)", b"")
}

fn shell_exec(db: &Path, sql: &str) -> String {
    format!(
        "{} {} '{}'",
        sqlite3_shell().display(),
        db.display(),
        sql.replace('\'', "'\\''")
    )
}

/// The flags a command's `-h` lists (lines `\t-name ...`).
fn flags_of(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix("\t-").or_else(|| l.strip_prefix("  -")))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

fn help(official: bool, cmd: &str) -> String {
    let o = if official {
        run_official(&[cmd, "-h"])
    } else {
        run_ours(&[cmd, "-h"])
    };
    format!("{}{}", o.stdout, o.stderr)
}

#[test]
fn every_official_flag_is_accepted() {
    for cmd in [
        "replicate",
        "restore",
        "ltx",
        "wal",
        "databases",
        "status",
        "reset",
    ] {
        let theirs = flags_of(&help(true, cmd));
        let mine = flags_of(&help(false, cmd));
        assert!(!theirs.is_empty(), "official {cmd} -h lists flags");
        let missing: Vec<_> = theirs.difference(&mine).collect();
        assert!(
            missing.is_empty(),
            "{cmd}: flags of the official binary missing from ours: {missing:?}"
        );
    }
    let ours_help = run_ours(&["help"]).ok().stdout;
    for cmd in [
        "databases",
        "generations",
        "ltx",
        "replicate",
        "reset",
        "restore",
        "run",
        "snapshots",
        "status",
        "version",
        "wal",
    ] {
        assert!(
            ours_help.contains(&format!("\t{cmd} ")),
            "help lists {cmd}:\n{ours_help}"
        );
    }
}

#[test]
fn replicate_flag_errors_match_the_official_binary() {
    let s = Scratch::new("replicate-flag-errors");
    let cfg = s.write("l.yml", "dbs: []\n");
    let cfg = cfg.to_string_lossy().into_owned();
    let cases: [&[&str]; 5] = [
        &["replicate", "-config", &cfg, "-exec", "true", "-once"],
        &["replicate", "-config", &cfg, "-force-snapshot"],
        &["replicate", "-config", &cfg, "-enforce-retention"],
        &["replicate", "/tmp/only-a-db.db"],
        &["replicate", "-config", &cfg, "/tmp/a.db", "file:///tmp/r"],
    ];
    for args in cases {
        let theirs = run_official(args);
        let mine = run_ours(args);
        assert_eq!(mine.code(), Some(1), "{mine}");
        assert_eq!(theirs.code(), Some(1), "{theirs}");
        let last = |o: &Output| {
            o.stderr
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            last(&theirs).ends_with(last(&mine).trim_start_matches("Error: ")),
            "{args:?}: ours {:?}, official {:?}",
            last(&mine),
            last(&theirs)
        );
    }
    // Sidecar mode with nothing to follow: a clear error, not an unknown command.
    let o = run_ours(&["replicate", "-config", &cfg]);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stderr.contains("no databases to replicate"), "{o}");
}

#[test]
fn replicate_exec_runs_the_program_replicated_with_its_status() {
    let s = Scratch::new("replicate-exec");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .write(&s.join("litestream.yml"));
    let cfg = cfg.to_string_lossy().into_owned();
    let sql = "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t;";
    let o = out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, sql),
    ]));
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout, "2\n");
    assert_restores_to(&s, &replica, &db, "exec");

    // The child's own status (the official exits 1 for any failure).
    let o = out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        "sh -c 'exit 7'",
    ]));
    assert_eq!(o.code(), Some(7), "{o}");

    // `exec:` in the config file, and -log-level / -no-expand-env reach the child.
    let keyed = s.write(
        "exec.yml",
        &format!(
            "exec: sh -c 'echo \"$LOG_LEVEL $LITESTREAM_NO_EXPAND_ENV\"'\ndbs:\n  - path: {}\n    replica: {{url: {}}}\n",
            db.display(),
            file_url(&replica)
        ),
    );
    let o = out(ours(&[
        "replicate",
        "-no-expand-env",
        "-log-level",
        "debug",
        "-config",
        &keyed.to_string_lossy(),
    ]))
    .ok();
    assert_eq!(o.stdout.trim(), "debug 1");
}

#[test]
fn replicate_positional_form_and_restore_if_db_not_exists() {
    let s = Scratch::new("replicate-positional");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let url = file_url(&replica);
    let db_arg = db.to_string_lossy().into_owned();
    let sql = "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);";
    out(ours(&[
        "replicate",
        "-exec",
        &shell_exec(&db, sql),
        &db_arg,
        &url,
    ]))
    .ok();
    assert_restores_to(&s, &replica, &db, "positional");

    // The database is gone: restored before the program starts.
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(s.join(f));
    }
    let o = out(ours(&[
        "replicate",
        "-restore-if-db-not-exists",
        "-exec",
        &shell_exec(&db, "SELECT count(*) FROM t;"),
        &db_arg,
        &url,
    ]))
    .ok();
    assert_eq!(o.stdout, "3\n");
}

#[test]
fn status_reset_wal_snapshots_generations_databases() {
    let s = Scratch::new("cli-commands");
    let db = s.join("app.db");
    let replica = s.join("replica");
    let cfg = Config::new()
        .db(&db, &replica)
        .write(&s.join("litestream.yml"));
    let cfg = cfg.to_string_lossy().into_owned();
    let sql = "CREATE TABLE t(x); INSERT INTO t VALUES (1);";
    out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, sql),
    ]))
    .ok();

    // status: the official columns and JSON fields.
    let mine = run_ours(&["status", "-config", &cfg]).ok().stdout;
    let theirs = run_official(&["status", "-config", &cfg]).ok().stdout;
    let header = |t: &str| {
        t.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(header(&mine), header(&theirs));
    assert!(mine.lines().nth(1).unwrap().contains(" ok "), "{mine}");
    let keys = |t: &str| {
        t.lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .map(|l| l.split('"').next().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    let mine_json = run_ours(&["status", "-json", "-config", &cfg]).ok().stdout;
    let theirs_json = run_official(&["status", "-json", "-config", &cfg])
        .ok()
        .stdout;
    assert_eq!(
        keys(&mine_json),
        keys(&theirs_json),
        "{mine_json}\n{theirs_json}"
    );

    // restore -f: follows new commits into the restored file until killed.
    let follow = s.join("follow.db");
    let mut child = Command::new(our_bin())
        .args([
            "restore",
            "-f",
            "-follow-interval",
            "100ms",
            "-o",
            &follow.to_string_lossy(),
            &file_url(&replica),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, "INSERT INTO t VALUES (10);"),
    ]))
    .ok();
    let caught_up = wait_until(std::time::Duration::from_secs(30), || {
        follow.exists() && query(&follow, "SELECT count(*) FROM t;").trim() == "2"
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(caught_up, "restore -f did not apply the new commit");
    assert_integrity(&follow, "restore -f");
    let sql = "DELETE FROM t WHERE x = 10;";
    out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, sql),
    ]))
    .ok();

    // wal: the deprecation warning of the official binary, then the ltx listing.
    let url = file_url(&replica);
    let w = run_ours(&["wal", &url]).ok();
    let tw = run_official(&["wal", &url]).ok();
    assert_eq!(w.stderr.lines().next(), tw.stderr.lines().next());
    assert_eq!(w.stdout, run_ours(&["ltx", &url]).ok().stdout);

    // databases with -no-expand-env: same output as the official.
    let a = run_ours(&["databases", "-no-expand-env", "-config", &cfg])
        .ok()
        .stdout;
    let b = run_official(&["databases", "-no-expand-env", "-config", &cfg])
        .ok()
        .stdout;
    assert_eq!(a, b);

    // snapshots lists level 9; generations explains.
    let snaps = run_ours(&["snapshots", &url]).ok().stdout;
    assert!(snaps.starts_with("replica"), "{snaps}");
    let g = run_ours(&["generations", &url]);
    assert_eq!(g.code(), Some(1));
    assert!(g.stderr.contains("ltx -level all"), "{g}");

    // reset: dry run, then reset; replication continues with a full image, restores equal.
    let dry = run_ours(&["reset", "-dry-run", &db.to_string_lossy()])
        .ok()
        .stdout;
    assert!(
        dry.starts_with("Dry run: local Litestream state would be reset for: "),
        "{dry}"
    );
    let r = run_ours(&["reset", &db.to_string_lossy()]).ok().stdout;
    assert!(r.contains("Reset complete."), "{r}");
    let sql = "INSERT INTO t VALUES (2);";
    out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, sql),
    ]))
    .ok();
    assert_restores_to(&s, &replica, &db, "after-reset");
}

/// The official sidecar and our extension on one database with default settings, each to its
/// own replica: the meta directories do not collide and both replicas restore equal.
#[test]
fn dual_run_with_the_official_sidecar() {
    let s = Scratch::new("dual-run");
    let db = s.join("app.db");
    let ours_replica = s.join("ours");
    let theirs_replica = s.join("theirs");
    sqlite3_plain(&db, "PRAGMA journal_mode=wal; CREATE TABLE t(x);").ok();
    let mut sidecar =
        Replicator::with_url(&db, &file_url(&theirs_replica), &s.join("official.log"));
    let cfg = Config::new()
        .db(&db, &ours_replica)
        .write(&s.join("litestream.yml"));
    let cfg = cfg.to_string_lossy().into_owned();
    for i in 0..20 {
        // The official sidecar takes the write lock for its own bookkeeping now and then.
        let sql = format!("PRAGMA busy_timeout=10000; INSERT INTO t VALUES ({i});");
        out(ours(&[
            "replicate",
            "-config",
            &cfg,
            "-exec",
            &shell_exec(&db, &sql),
        ]))
        .ok();
    }
    sidecar.assert_running();
    assert!(
        wait_until(std::time::Duration::from_secs(30), || {
            let o = run_official(&[
                "restore",
                "-o",
                &s.join("probe.db").to_string_lossy(),
                &file_url(&theirs_replica),
            ]);
            let n =
                o.success() && query(&s.join("probe.db"), "SELECT count(*) FROM t;").trim() == "20";
            let _ = std::fs::remove_file(s.join("probe.db"));
            n
        }),
        "the official sidecar did not ship all 20 rows:\n{}",
        sidecar.log()
    );
    let log = sidecar.stop();
    assert!(
        !log.contains("no such file"),
        "the official sidecar lost its local files:\n{log}"
    );
    assert!(s.join(".app.db-liblitestream").is_dir());
    assert_restores_to(&s, &theirs_replica, &db, "dual-official");
    // The sidecar adds its own tables (`_litestream_seq`, `_litestream_lock`) without the
    // extension, possibly after our last write: the next process that writes through the
    // extension ships them with its own commit.
    out(ours(&[
        "replicate",
        "-config",
        &cfg,
        "-exec",
        &shell_exec(&db, "INSERT INTO t VALUES (20);"),
    ]))
    .ok();
    assert_restores_to(&s, &ours_replica, &db, "dual-ours");
}

use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn config_file(dir: &Path, text: &str) -> String {
    let p = dir.join("litestream.yml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn err(a: &[&str]) -> String {
    parse(&args(a)).unwrap_err().to_string()
}

#[test]
fn flag_combinations_like_the_official_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "dbs: []\n");
    assert_eq!(
        err(&["-config", &cfg, "-exec", "true", "-once"]),
        "cannot specify -once flag with -exec"
    );
    assert_eq!(
        err(&["-config", &cfg, "-force-snapshot"]),
        "cannot specify -force-snapshot flag without -once"
    );
    assert_eq!(
        err(&["-config", &cfg, "-enforce-retention"]),
        "cannot specify -enforce-retention flag without -once"
    );
    assert_eq!(
        err(&["/data/a.db"]),
        "must specify at least one replica URL for /data/a.db"
    );
    assert_eq!(
        err(&["-config", &cfg, "/data/a.db", "file:///b"]),
        "cannot specify a replica URL and the -config flag"
    );
    assert_eq!(
        err(&["/data/a.db", "file:///b", "-exec"]),
        "flag \"-exec\" must be positioned before DB_PATH and REPLICA_URL arguments"
    );
    assert!(err(&["-log-level", "loud", "-config", &cfg]).contains("invalid -log-level \"loud\""));
    assert_eq!(err(&["-nope"]), "flag provided but not defined: -nope");
}

#[test]
fn without_a_command_it_is_sidecar_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "dbs: []\n");
    let r = parse(&args(&["-config", &cfg])).unwrap();
    assert!(r.exec.is_none() && !r.once && !r.force_snapshot);
    let r = parse(&args(&["-config", &cfg, "-once", "-force-snapshot"])).unwrap();
    assert!(r.once && r.force_snapshot);
    // (The positional form writes one file per process: checked in one test only, below.)
}

#[test]
fn log_level_is_found_before_parsing() {
    assert_eq!(
        log_level_arg(&args(&["-log-level", "DEBUG", "-once"])),
        Some("debug")
    );
    assert_eq!(
        log_level_arg(&args(&["-once", "--log-level=warn"])),
        Some("warn")
    );
    assert_eq!(log_level_arg(&args(&["-log-level", "loud"])), None);
    // Flags end at the first positional argument, as in Go's flag package.
    assert_eq!(
        log_level_arg(&args(&["/a.db", "-log-level", "debug"])),
        None
    );
    assert_eq!(log_level_arg(&args(&["-config", "x.yml"])), None);
}

#[test]
fn exec_from_the_flag_or_the_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), "exec: sh -c 'exit 3'\ndbs: []\n");
    let r = parse(&args(&["-config", &cfg])).unwrap();
    assert_eq!(r.exec.as_deref(), Some("sh -c 'exit 3'"));
    let r = parse(&args(&[
        "-config",
        &cfg,
        "-exec",
        "true",
        "-log-level",
        "DEBUG",
    ]))
    .unwrap();
    assert_eq!(
        r.exec.as_deref(),
        Some("true"),
        "the flag wins over the key"
    );
    assert_eq!(r.log_level, Some("debug"));

    std::fs::write(dir.path().join(run::LIBRARY_NAME), b"").unwrap();
    let none = |_: &str| None;
    let env = Env {
        var: &none,
        exe: Some(dir.path().join("litestream")),
    };
    let r = parse(&args(&[
        "-config",
        &cfg,
        "-no-expand-env",
        "-log-level",
        "warn",
    ]))
    .unwrap();
    let p = plan(&r, &env).unwrap();
    assert_eq!(p.program, "sh");
    assert_eq!(p.args, args(&["-c", "exit 3"]));
    let env_of = |k: &str| p.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(env_of("LITESTREAM_CONFIG").as_deref(), Some(cfg.as_str()));
    assert_eq!(env_of("LOG_LEVEL").as_deref(), Some("warn"));
    assert_eq!(env_of(config::NO_EXPAND_ENV).as_deref(), Some("1"));
    assert!(env_of("LD_PRELOAD").unwrap().ends_with(run::LIBRARY_NAME));

    let mut bad = parse(&args(&["-config", &cfg])).unwrap();
    bad.exec = Some("sh -c 'unclosed".into());
    assert!(plan(&bad, &env)
        .unwrap_err()
        .to_string()
        .contains("unbalanced quotes"));
}

#[test]
fn positional_form_writes_a_one_database_config() {
    let r = parse(&args(&[
        "-exec",
        "true",
        "/data/x y.db",
        "file:///backups/x",
    ]))
    .unwrap();
    assert!(r.generated && !r.once);
    let c = config::load_with(&r.config_file, false).unwrap();
    std::fs::remove_file(&r.config_file).unwrap();
    assert_eq!(c.dbs.len(), 1);
    assert_eq!(c.dbs[0].path, Path::new("/data/x y.db"));
    assert_eq!(c.dbs[0].replica.url(), "file:///backups/x");
    let e = err(&["-exec", "true", "/data/a.db", "file:///b", "file:///c"]);
    assert!(e.contains("only one replica URL"), "{e}");
}

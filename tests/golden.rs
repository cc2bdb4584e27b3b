//! Golden shell tests: each `ext/golden/NAME.sql` is run by the real `sqlite3` shell (stdin,
//! `-batch`), and its combined stdout+stderr must equal `ext/golden/NAME.expected`.
//!
//! In scripts and expected files, `@SO@` stands for the extension path without `.so` and
//! `@DIR@` for the scratch directory the script runs in. A line
//! `-- golden: config DBFILE` makes the runner write `@DIR@/litestream.yml` replicating
//! `@DIR@/DBFILE` to `@DIR@/replica` (sync-interval 0) and set `LITESTREAM_CONFIG` to it.
//! More directives adjust that config or the environment:
//! `-- golden: replica REL` (replica directory relative to `@DIR@`),
//! `-- golden: sync-interval D`, `-- golden: yaml LINE` (a top-level YAML line),
//! `-- golden: env NAME=VALUE`.
//! `LITESTREAM_GOLDEN_BLESS=1` rewrites the expected files from the actual output.
//!
//! Needs: the extension (`LITESTREAM_SO`), `sqlite3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use litestream_tests::paths::sqlite3_shell;
use litestream_tests::*;

fn golden_dir() -> PathBuf {
    workspace_root().join("ext/golden")
}

fn scripts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("ext/golden exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    v.sort();
    v
}

/// Runs one script and returns its combined output with paths replaced by placeholders.
fn run_script(script: &Path) -> String {
    let name = script.file_stem().unwrap().to_string_lossy().into_owned();
    let s = Scratch::new(&format!("golden-{name}"));
    let dir = s.path().to_string_lossy().into_owned();
    let so = so_load_arg();
    let text = std::fs::read_to_string(script).unwrap();
    let text = text.replace("@SO@", &so).replace("@DIR@", &dir);

    let out_path = s.join("output.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(sqlite3_shell());
    cmd.arg("-batch")
        .current_dir(s.path())
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let (mut db, mut replica, mut interval, mut yaml) = (None, "replica", "0", Vec::new());
    for line in text.lines() {
        let Some(d) = line.strip_prefix("-- golden: ") else {
            continue;
        };
        let (key, value) = d.split_once(' ').unwrap_or((d, ""));
        let value = value.trim();
        match key {
            "config" => db = Some(value),
            "replica" => replica = value,
            "sync-interval" => interval = value,
            "yaml" => yaml.push(value),
            "env" => {
                let (k, v) = value.split_once('=').expect("env NAME=VALUE");
                cmd.env(k, v);
            }
            other => panic!("{}: unknown golden directive {other:?}", script.display()),
        }
    }
    if let Some(db) = db {
        let mut cfg = Config::new()
            .db(&s.join(db), &s.join(replica))
            .sync_interval(interval);
        for line in yaml {
            cfg = cfg.extra(line);
        }
        cmd.env("LITESTREAM_CONFIG", cfg.write(&s.join("litestream.yml")));
    }
    let mut child = cmd.spawn().expect("start sqlite3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    let output = std::fs::read_to_string(&out_path).unwrap();
    let output = output.replace(&so, "@SO@").replace(&dir, "@DIR@");
    format!(
        "{output}-- exit status: {}\n",
        status.code().map_or("signal".into(), |c| c.to_string())
    )
}

#[test]
fn golden_shell_scripts() {
    let scripts = scripts();
    assert!(!scripts.is_empty(), "no ext/golden/*.sql scripts");
    let bless = std::env::var_os("LITESTREAM_GOLDEN_BLESS").is_some();
    let mut failures = Vec::new();
    for script in &scripts {
        let expected_path = script.with_extension("expected");
        let actual = run_script(script);
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if actual != expected {
            let mut diff = String::new();
            let (a, e): (Vec<&str>, Vec<&str>) =
                (actual.lines().collect(), expected.lines().collect());
            for i in 0..a.len().max(e.len()) {
                let (x, y) = (a.get(i).copied(), e.get(i).copied());
                if x != y {
                    diff.push_str(&format!(
                        "  line {}: got {:?}, want {:?}\n",
                        i + 1,
                        x.unwrap_or("<none>"),
                        y.unwrap_or("<none>")
                    ));
                }
            }
            failures.push(format!(
                "{}:\n{diff}--- actual output ---\n{actual}",
                script.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

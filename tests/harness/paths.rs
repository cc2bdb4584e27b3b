//! Where the artefacts under test are: env vars first, then the workspace defaults.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the root `Cargo.toml` and `Makefile`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

fn locate(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default,
    };
    if !path.is_file() {
        panic!(
            "{what} not found at {} (from {var} or its default). Run `make test` from the \
             workspace root: it installs the test peers and builds the release artefacts, \
             then runs these tests with {var} set.",
            path.display()
        );
    }
    path
}

/// The extension, `liblitestream.so` (release build).
pub fn so_path() -> PathBuf {
    locate(
        "LITESTREAM_SO",
        target_dir().join("release/liblitestream.so"),
        "the extension liblitestream.so",
    )
}

/// The argument for `.load` / `load_extension`: the `.so` path without its suffix, so that
/// SQLite derives the entry point `sqlite3_litestream_init` from the file name.
pub fn so_load_arg() -> String {
    let so = so_path();
    let s = so.to_string_lossy().into_owned();
    s.strip_suffix(".so").map(str::to_owned).unwrap_or(s)
}

/// Our CLI, `litestream` (release build).
pub fn our_bin() -> PathBuf {
    locate(
        "LITESTREAM_BIN",
        target_dir().join("release/litestream"),
        "our litestream CLI",
    )
}

/// The official Litestream 0.5.17 binary installed by `scripts/setup-test-env.sh`.
pub fn official_bin() -> PathBuf {
    locate(
        "LITESTREAM_OFFICIAL",
        workspace_root().join(".venv/bin/litestream"),
        "the official litestream 0.5.17 binary",
    )
}

/// The system `sqlite3` shell (override with `LITESTREAM_SQLITE3`).
pub fn sqlite3_shell() -> PathBuf {
    match std::env::var_os("LITESTREAM_SQLITE3") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("sqlite3"),
    }
}

/// Debian's python (its `sqlite3` module allows `load_extension`; pyenv builds do not).
/// Override with `LITESTREAM_PYTHON`.
pub fn python3() -> PathBuf {
    let path = match std::env::var_os("LITESTREAM_PYTHON") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("/usr/bin/python3"),
    };
    if !path.is_file() {
        panic!(
            "{} not found: these tests need a python3 whose sqlite3 module can load \
             extensions (Debian: apt-get install python3), or set LITESTREAM_PYTHON",
            path.display()
        );
    }
    path
}

/// The program `name` in a directory of `PATH`, if any.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `local` when it is installed there (under the workspace), else `name` on `PATH`.
pub fn local_or_on_path(local: &Path, name: &str) -> Option<PathBuf> {
    if local.is_file() {
        return Some(local.to_path_buf());
    }
    find_on_path(name)
}

/// A test server that is not installed (`what` says which and how to get it): a failure when
/// `LITESTREAM_REQUIRE_TEST_SERVERS=1` (CI sets it), else a loud skip of the `tests` family.
/// Returns `None` for the caller to hand on.
pub fn missing_test_server<T>(what: &str, tests: &str) -> Option<T> {
    if std::env::var("LITESTREAM_REQUIRE_TEST_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{what}, and LITESTREAM_REQUIRE_TEST_SERVERS=1");
    }
    eprintln!("\n*** SKIP: {what}; the {tests} tests are SKIPPED ***\n");
    None
}

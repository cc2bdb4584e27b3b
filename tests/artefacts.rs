//! The built artefacts have the promised shape: the extension exports only its entry point and
//! the `sqlite3_open*` interposers (ext/exports.map), is linked `-z nodelete`, and loads.
//!
//! Needs: the extension (`LITESTREAM_SO`), `nm` and `readelf` (binutils), `sqlite3`.

use std::collections::BTreeSet;
use std::process::Command;

use litestream_tests::*;

const ALLOWED: [&str; 4] = [
    "sqlite3_litestream_init",
    "sqlite3_open",
    "sqlite3_open_v2",
    "sqlite3_open16",
];

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} (install binutils): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn extension_exports_only_the_entry_point_and_open_interposers() {
    let so = so_path();
    let listing = tool("nm", &["-D", "--defined-only", &so.to_string_lossy()]);
    let exported: BTreeSet<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(
        exported.contains("sqlite3_litestream_init"),
        "the entry point sqlite3_litestream_init is not exported: {exported:?}"
    );
    let extra: Vec<&&str> = exported.iter().filter(|s| !ALLOWED.contains(s)).collect();
    assert!(
        extra.is_empty(),
        "unexpected exported symbols {extra:?}: keep #[no_mangle] to the entry points \
         listed in ext/exports.map"
    );
}

#[test]
fn extension_is_linked_nodelete() {
    let so = so_path();
    let dynamic = tool("readelf", &["-d", &so.to_string_lossy()]);
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("FLAGS_1") && l.contains("NODELETE")),
        "liblitestream.so must be linked with -z nodelete (build.rs):\n{dynamic}"
    );
    assert!(
        !dynamic.contains("libsqlite3"),
        "the extension must not link libsqlite3 itself (it uses the loader's API table):\n{dynamic}"
    );
}

#[test]
fn extension_loads_and_registers_the_vfs_without_making_it_default() {
    let out = sqlite3(
        &format!(
            ".bail on\n.load {so}\n\
             .vfslist\n",
            so = so_load_arg()
        ),
        &[],
    )
    .clean();
    // `.vfslist` prints blocks of `vfs.zName = "…"`; the default one is listed first.
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("vfs.zName"))
        .map(|l| l.trim_start_matches([' ', '=']).trim().trim_matches('"'))
        .collect();
    assert!(
        names.contains(&"litestream"),
        ".vfslist after .load: {names:?}\n{}",
        out.stdout
    );
    assert_ne!(
        names.first(),
        Some(&"litestream"),
        "the litestream VFS must not become the default"
    );
}

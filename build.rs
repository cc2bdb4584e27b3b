//! Link settings for the `cdylib` only (the rlib, the CLI and the tests are unaffected):
//! - `ext/exports.map`: export only the entry point and the interposed `sqlite3_open*`;
//! - `--exclude-libs ALL`: symbols of the statically linked dependencies are never exported.
//!   rustc's own version script lists every upstream `#[no_mangle]` function as global (e.g.
//!   26 `crc_fast_*` C functions pulled in by the AWS SDK), which ours cannot override;
//!   preloaded, they would interpose into the host process.
//! - `-z nodelete`: SQLite may `dlclose` an extension, but our VFS, auto-extension and
//!   background threads must outlive that, so the library is never unmapped.
//!
//! `--undefined-version`: the map names the `sqlite3_open*` interposers, which a build may not
//! define yet; rustc passes `--no-undefined-version`, which would turn that into an error.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=ext/exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/ext/exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined-version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}

//! Loading configuration files from disk: defaults, paths through symlinks, meta directories.

use super::*;

#[test]
fn load_files_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yml");
    assert!(matches!(load(&missing), Err(ConfigError::NotFound { .. })));
    assert!(matches!(load_default_from(None, &missing), Ok(None)));
    assert!(matches!(
        load_default_from(Some(&missing), &missing),
        Err(ConfigError::NotFound { .. })
    ));

    let file = dir.path().join("litestream.yml");
    std::fs::write(
        &file,
        "dbs:\n  - path: /a.db\n    replica:\n      url: file:///r\n      sync-interval: 2s\n",
    )
    .unwrap();
    let c = load(&file).unwrap();
    assert_eq!(c.source.as_deref(), Some(file.as_path()));
    assert_eq!(c.dbs[0].replica.sync_interval, Duration::from_secs(2));
    let c = load_default_from(None, &file).unwrap().unwrap();
    assert_eq!(c.dbs.len(), 1);

    std::fs::write(
        &file,
        "dbs:\n  - path: /a.db\n    replica:\n      url: file:///r\n      sync-interval: 2\n",
    )
    .unwrap();
    let e = load(&file).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: line 5 column 22: dbs[0].replica.sync-interval:",
            file.display()
        )),
        "{e}"
    );
    assert!(default_path().is_absolute() || std::env::var_os("LITESTREAM_CONFIG").is_some());
}

#[test]
fn find_db_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let yaml = format!(
        "dbs:\n  - path: {}/app.db\n    replica: {{url: file:///r}}\n  - path: {}/other.db\n    replica: {{url: file:///s}}\n",
        link.display(),
        real.display()
    );
    let c = ok(&yaml);
    assert_eq!(
        c.find_db(&real.join("app.db")).map(|d| d.path.clone()),
        Some(link.join("app.db"))
    );
    assert_eq!(
        c.find_db(&link.join("app.db")).map(|d| d.path.clone()),
        Some(link.join("app.db"))
    );
    assert_eq!(
        c.find_db(&link.join("./sub/../other.db"))
            .map(|d| d.path.clone()),
        Some(real.join("other.db"))
    );
    assert!(c.find_db(&real.join("none.db")).is_none());
    assert!(c.find_db(Path::new("/")).is_none());
}

#[test]
fn default_meta_dir_keeps_an_existing_one_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let ours = dir.path().join(".app.db-liblitestream");
    let legacy = dir.path().join(".app.db-litestream");
    // The official binary's directory (no state.json) is never taken.
    std::fs::create_dir_all(legacy.join("ltx/0")).unwrap();
    assert_eq!(super::default_meta_dir(&db), ours);
    // One of ours made before the default changed keeps being used...
    std::fs::write(legacy.join("state.json"), "{}").unwrap();
    assert_eq!(super::default_meta_dir(&db), legacy);
    // ...unless the new one exists too.
    std::fs::create_dir_all(&ours).unwrap();
    assert_eq!(super::default_meta_dir(&db), ours);
}

//! Directory mode (`dir`, `pattern`, `recursive`, `watch`) and many tenant databases in one
//! process (issue 14): a real directory tree replicated by the extension in one Python
//! process and restored by the official binary and ours, the official binary's own directory
//! replica restored by ours, the CLI's `databases`/`restore DB_PATH`/`ltx DB_PATH` on
//! directory entries, and 1000 databases in one process with a constant thread count and at
//! most the stager lock and our database handle as extra descriptors per database.

use std::path::Path;

use litestream_tests::*;

/// Opens each database of ARGS[1:] (relative to ARGS[0]) by its plain path (the extension
/// is SQLite's default VFS: the configuration has a `dir` entry), writes a row that names it,
/// and closes it. `new/*.db` files do not exist before: created after start-up.
const WRITE_EACH: &str = r#"
root = ARGS[0]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
for rel in ARGS[1:]:
    c = sqlite3.connect(os.path.join(root, rel), isolation_level=None, timeout=20)
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(3):
        c.execute("INSERT INTO t(v) VALUES (?)", (rel + ":" + str(i),))
    c.close()
"#;

fn dir_config(scratch: &Scratch, data: &Path, replica: &Path, watch: bool) -> std::path::PathBuf {
    scratch.write(
        "litestream.yml",
        &format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: {watch}\n    replica:\n      type: file\n      path: {}\n",
            data.display(),
            replica.display()
        ),
    )
}

/// A plain (not replicated) WAL database with one row.
fn plain_db(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    sqlite3_plain(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('before');",
    )
    .ok();
}

#[test]
fn directory_tree_is_replicated_where_the_official_binary_puts_it() {
    let s = Scratch::new("tenants-tree");
    let data = s.join("data");
    let replica = s.join("replica");
    for rel in ["a.db", "sub/b.db", "sub/deeper/c.db", "skip.sqlite"] {
        plain_db(&data.join(rel));
    }
    let cfg = dir_config(&s, &data, &replica, true);
    let rels = [
        "a.db",
        "sub/b.db",
        "sub/deeper/c.db",
        "skip.sqlite",
        "new/d.db",
    ];
    std::fs::create_dir_all(data.join("new")).unwrap();
    let root = data.to_string_lossy().to_string();
    let mut args = vec![root.as_str()];
    args.extend(rels);
    python(WRITE_EACH, &args, &[("LITESTREAM_CONFIG", &cfg)]).ok();

    for rel in ["a.db", "sub/b.db", "sub/deeper/c.db", "new/d.db"] {
        let rep = replica.join(rel);
        assert!(
            rep.join("ltx/0").is_dir(),
            "{rel}: no replica at {}",
            rep.display()
        );
        assert_restores_to(&s, &rep, &data.join(rel), &rel.replace('/', "_"));
    }
    assert!(
        !replica.join("skip.sqlite").exists(),
        "a file the pattern excludes passes through untouched"
    );
    assert!(!data.join(".skip.sqlite-liblitestream").exists());

    // The CLI understands the directory entry: every database, and restore/ltx by DB_PATH.
    let cfg_arg = cfg.to_string_lossy().to_string();
    let listed = run_ours(&["databases", "-config", &cfg_arg]).ok().stdout;
    for rel in ["a.db", "sub/b.db", "sub/deeper/c.db", "new/d.db"] {
        assert!(
            listed.contains(&*data.join(rel).to_string_lossy()),
            "databases lacks {rel}:\n{listed}"
        );
    }
    assert!(!listed.contains("skip.sqlite"), "{listed}");
    let out = s.join("b-by-path.db");
    let b = data.join("sub/b.db");
    run_ours(&[
        "restore",
        "-config",
        &cfg_arg,
        "-o",
        &out.to_string_lossy(),
        &b.to_string_lossy(),
    ])
    .ok();
    assert_same_dump(&out, &b, "restore DB_PATH of a directory entry");
    let ltx = run_ours(&["ltx", "-config", &cfg_arg, &b.to_string_lossy()])
        .ok()
        .stdout;
    assert!(
        ltx.contains("0000000000000001"),
        "ltx DB_PATH lists the first file:\n{ltx}"
    );
}

#[test]
fn the_official_directory_replica_is_restored_by_ours() {
    let s = Scratch::new("tenants-official");
    let data = s.join("data");
    let replica = s.join("replica");
    for rel in ["a.db", "sub/b.db"] {
        plain_db(&data.join(rel));
    }
    let cfg = dir_config(&s, &data, &replica, false);
    let mut official = Replicator::with_config(&cfg, &s.join("official.log"));
    let shipped = || {
        ["a.db", "sub/b.db"]
            .iter()
            .all(|rel| !list_ltx(&replica.join(rel)).is_empty())
    };
    if !wait_until(std::time::Duration::from_secs(60), shipped) {
        panic!("the official binary shipped nothing:\n{}", official.log());
    }
    official.assert_running();
    official.stop();
    for rel in ["a.db", "sub/b.db"] {
        let out = s.join(format!("{}-ours.db", rel.replace('/', "_")));
        restore_ours(&file_url(&replica.join(rel)), &out);
        assert_same_dump(&out, &data.join(rel), rel);
    }
}

/// Opens N databases `tNNNN.db` under ARGS[0] (natively, or through the extension), writes
/// each once and keeps them all open; through the extension, waits until every one was
/// shipped and the uploader's idle pass closed what an idle database does not need. Prints
/// the process's threads and descriptors; through the extension, then writes every database
/// again and waits until each second write is acknowledged (`litestream_lag()` = 0).
const THOUSAND: &str = r#"
import glob
root, n, mode = ARGS[0], int(ARGS[1]), ARGS[2]
if mode == "ext":
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(SO)
    boot.close()
conns = []
for i in range(n):
    c = sqlite3.connect(os.path.join(root, "t%04d.db" % i), isolation_level=None, timeout=20)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("INSERT INTO t(v) VALUES (?)", ("tenant %d" % i,))
    conns.append(c)
if mode == "ext":
    import time
    while True:
        pending = sum(1 for i in range(n) if not glob.glob(os.path.join(ARGS[3], "t%04d.db" % i, "ltx", "0", "*.ltx")))
        if pending == 0:
            break
        time.sleep(0.2)
    # Let the uploader's last idle pass close what an idle database does not need.
    time.sleep(2)
print("threads", len(os.listdir("/proc/self/task")))
print("fds", len(os.listdir("/proc/self/fd")))
if mode == "ext":
    # Written again after idling (descriptors closed meanwhile): every write is shipped.
    import time
    for i, c in enumerate(conns):
        c.execute("INSERT INTO t(v) VALUES (?)", ("tenant %d again" % i,))
    deadline = time.time() + 120
    for i, c in enumerate(conns):
        while c.execute("SELECT litestream_lag()").fetchone()[0] != 0.0:
            if time.time() > deadline:
                sys.exit("t%04d: its second write was not shipped" % i)
            time.sleep(0.05)
for c in conns:
    c.close()
"#;

fn measure(
    root: &Path,
    n: usize,
    mode: &str,
    replica: &Path,
    cfg: Option<&Path>,
) -> (usize, usize) {
    let env: Vec<(&str, &Path)> = cfg.map(|c| ("LITESTREAM_CONFIG", c)).into_iter().collect();
    let out = python(
        THOUSAND,
        &[
            &root.to_string_lossy(),
            &n.to_string(),
            mode,
            &replica.to_string_lossy(),
        ],
        &env,
    )
    .ok();
    let get = |k: &str| -> usize {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {k} in:\n{out}"))
    };
    (get("threads"), get("fds"))
}

#[test]
fn a_thousand_databases_in_one_process() {
    const N: usize = 1000;
    // In memory: the subject is descriptors, threads and shipping, not the disk's fsyncs
    // (about ten per database; on a shared machine's disk they alone take minutes).
    let s = Scratch::in_memory("tenants-1000");
    let native_dir = s.join("native");
    let data = s.join("data");
    let replica = s.join("replica");
    std::fs::create_dir_all(&native_dir).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let cfg = s.write(
        "litestream.yml",
        &format!(
            "dbs:\n  - dir: {}\n    pattern: \"t*.db\"\n    watch: true\n    replica:\n      type: file\n      path: {}\n",
            data.display(),
            replica.display()
        ),
    );
    let (native_threads, native_fds) = measure(&native_dir, N, "native", &replica, None);
    let (threads, fds) = measure(&data, N, "ext", &replica, Some(&cfg));
    eprintln!(
        "native: {native_threads} threads, {native_fds} fds; ours: {threads} threads, {fds} fds"
    );
    assert!(
        threads <= native_threads + 7,
        "threads grow with the databases: {threads}"
    );
    // Per database: the stager lock, our read handle of the database file, which cannot
    // be closed while SQLite has the file open (closing it would drop SQLite's POSIX locks),
    // and the stager's wake socket (other processes' commits wake it, `src/wake.rs`).
    let extra = fds.saturating_sub(native_fds);
    assert!(
        extra <= 3 * N + 16,
        "{extra} extra descriptors for {N} databases"
    );
    for i in [0, N / 2, N - 1] {
        let rel = format!("t{i:04}.db");
        assert_restores_to(
            &s,
            &replica.join(&rel),
            &data.join(&rel),
            &format!("t{i:04}"),
        );
    }
    let shipped = (0..N)
        .filter(|i| !list_ltx(&replica.join(format!("t{i:04}.db"))).is_empty())
        .count();
    assert_eq!(shipped, N, "every tenant database reached the replica");
}

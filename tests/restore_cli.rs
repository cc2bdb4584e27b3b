//! `litestream restore` flags and exit codes of our CLI match the official 0.5.17 on the same
//! replica (written by the official `replicate -once`, so this runs without the extension).
//!
//! Needs: our CLI (`LITESTREAM_BIN`), the official binary (`LITESTREAM_OFFICIAL`), `sqlite3`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use litestream_tests::*;

/// A replica with three L0 files (TXIDs 1, 2, 3), one row added per TXID.
struct Fixture {
    s: Scratch,
    db: PathBuf,
    url: String,
    /// Dumps of the source right after TXID 1, 2, 3.
    states: Vec<PathBuf>,
}

fn once(db: &Path, url: &str) {
    run_official(&["replicate", "-once", &db.to_string_lossy(), url]).ok();
}

fn fixture(name: &str) -> Fixture {
    let s = Scratch::new(name);
    let db = s.join("db.sqlite");
    let url = file_url(&s.join("replica"));
    sqlite3_plain(
        &db,
        "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a');",
    )
    .clean();
    let mut states = Vec::new();
    for (i, v) in ["b", "c", "d"].iter().enumerate() {
        once(&db, &url);
        let copy = s.join(format!("state-{}.db", i + 1));
        std::fs::copy(&db, &copy).unwrap();
        let wal = s.join("db.sqlite-wal");
        if wal.exists() {
            std::fs::copy(&wal, s.join(format!("state-{}.db-wal", i + 1))).unwrap();
        }
        states.push(copy);
        // mtimes have ms precision: keep the files' times apart for -timestamp.
        std::thread::sleep(Duration::from_millis(20));
        if i < 2 {
            sqlite3_plain(&db, &format!("INSERT INTO t(v) VALUES ('{v}');")).clean();
        }
    }
    let files = list_ltx(&s.join("replica"));
    assert_eq!(
        files
            .iter()
            .map(|f| (f.min, f.max))
            .filter(|r| r.0 == r.1)
            .count(),
        3,
        "precondition: three L0 files expected: {}",
        describe(&files)
    );
    Fixture { s, db, url, states }
}

/// Runs `restore <args…>` with both CLIs, each with its own output path substituted for
/// `{out}`; asserts equal success. Returns (ours, official) outputs and paths.
fn both(f: &Fixture, tag: &str, args: &[&str], prepare: impl Fn(&Path)) -> [(Output, PathBuf); 2] {
    let run = |who: &str| {
        let out = f.s.join(format!("{tag}-{who}.db"));
        prepare(&out);
        let out_s = out.to_string_lossy().into_owned();
        let a: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{out}" { out_s.as_str() } else { a })
            .collect();
        let mut full = vec!["restore"];
        full.extend(a);
        let o = if who == "ours" {
            run_ours(&full)
        } else {
            run_official(&full)
        };
        (o, out)
    };
    let ours = run("ours");
    let official = run("official");
    assert_eq!(
        ours.0.code(),
        official.0.code(),
        "restore {args:?}: exit codes differ\nours: {}\nofficial: {}",
        ours.0,
        official.0
    );
    [ours, official]
}

fn no_prep(_: &Path) {}

#[test]
fn latest_and_txid_restores_match_official_and_source() {
    let f = fixture("cli-txid");
    let [(o, ours), (_, off)] = both(&f, "latest", &["-o", "{out}", &f.url], no_prep);
    assert!(o.success(), "{o}");
    assert_same_dump(&ours, &f.db, "latest restore vs source");
    assert_same_dump(&off, &f.db, "official latest restore vs source");
    for txid in 1..=3u64 {
        let hex = format!("{txid:016x}");
        let [(o, ours), _] = both(
            &f,
            &format!("txid{txid}"),
            &["-txid", &hex, "-o", "{out}", &f.url],
            no_prep,
        );
        assert!(o.success(), "{o}");
        assert_integrity(&ours, &hex);
        assert_same_dump(
            &ours,
            &f.states[txid as usize - 1],
            &format!("-txid {hex} vs the source at that TXID"),
        );
    }
    // A TXID beyond the replica, and malformed TXIDs, fail (exit 1) like the official.
    let [(o, _), _] = both(
        &f,
        "txid-future",
        &["-txid", "00000000000000ff", "-o", "{out}", &f.url],
        no_prep,
    );
    assert_eq!(o.code(), Some(1), "{o}");
    for bad in ["3", "000000000000000g", "0x00000000000003"] {
        let [(o, out), _] = both(
            &f,
            "txid-bad",
            &["-txid", bad, "-o", "{out}", &f.url],
            no_prep,
        );
        assert!(!o.success(), "-txid {bad} must be rejected: {o}");
        assert!(!out.exists(), "-txid {bad}: no output may be left behind");
    }
}

#[test]
fn existing_output_needs_force_and_if_db_not_exists_skips() {
    let f = fixture("cli-force");
    let garbage = |p: &Path| std::fs::write(p, b"not a database, keep me").unwrap();
    let [(o, out), _] = both(&f, "exists", &["-o", "{out}", &f.url], garbage);
    assert_eq!(
        o.code(),
        Some(1),
        "existing non-empty output without -force: {o}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"not a database, keep me");

    let [(o, out), _] = both(
        &f,
        "skip",
        &["-if-db-not-exists", "-o", "{out}", &f.url],
        garbage,
    );
    assert_eq!(
        o.code(),
        Some(0),
        "-if-db-not-exists with existing output: {o}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"not a database, keep me");

    let [(o, out), _] = both(&f, "force", &["-force", "-o", "{out}", &f.url], garbage);
    assert!(o.success(), "-force: {o}");
    assert_same_dump(&out, &f.db, "-force restore vs source");

    // An existing empty file is silently replaced.
    let empty = |p: &Path| std::fs::write(p, b"").unwrap();
    let [(o, out), _] = both(&f, "empty", &["-o", "{out}", &f.url], empty);
    assert!(o.success(), "existing empty output: {o}");
    assert_same_dump(&out, &f.db, "restore over an empty file vs source");
}

#[test]
fn missing_replica_fails_unless_if_replica_exists() {
    let f = fixture("cli-missing");
    let missing = file_url(&f.s.join("no-such-replica"));
    let [(o, out), _] = both(&f, "missing", &["-o", "{out}", &missing], no_prep);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(!out.exists());
    let [(o, out), _] = both(
        &f,
        "missing-ok",
        &["-if-replica-exists", "-o", "{out}", &missing],
        no_prep,
    );
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(
        !out.exists(),
        "-if-replica-exists must not create the output"
    );
    std::fs::create_dir_all(f.s.join("empty-replica/ltx/0")).unwrap();
    let empty = file_url(&f.s.join("empty-replica"));
    let [(o, _), _] = both(
        &f,
        "empty-ok",
        &["-if-replica-exists", "-o", "{out}", &empty],
        no_prep,
    );
    assert_eq!(o.code(), Some(0), "{o}");
}

fn rfc3339_ms(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let out = python(
        "import datetime\nms = int(ARGS[0])\nd = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)\nprint(d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (ms % 1000))",
        &[&ms.to_string()],
        &[],
    )
    .ok();
    out.stdout.trim().to_string()
}

#[test]
fn timestamp_restores_match_official() {
    let f = fixture("cli-timestamp");
    let files = list_ltx(&f.s.join("replica"));
    let l0: Vec<_> = files.iter().filter(|x| x.level == 0).collect();
    // Just after the second file's time: TXIDs 1..2 qualify (times strictly before T).
    let t2 = std::fs::metadata(&l0[1].path).unwrap().modified().unwrap();
    let ts = rfc3339_ms(t2 + Duration::from_millis(1));
    let [(o, ours), _] = both(
        &f,
        "ts",
        &["-timestamp", &ts, "-o", "{out}", &f.url],
        no_prep,
    );
    assert!(o.success(), "-timestamp {ts}: {o}");
    assert_same_dump(
        &ours,
        &f.states[1],
        &format!("-timestamp {ts} vs the source at TXID 2"),
    );
    // Later than every file: the official fails with "timestamp does not exist".
    let [(o, _), _] = both(
        &f,
        "ts-future",
        &["-timestamp", "2999-01-01T00:00:00Z", "-o", "{out}", &f.url],
        no_prep,
    );
    assert_eq!(o.code(), Some(1), "{o}");
}

#[test]
fn version_prints_and_exits_zero() {
    let o = run_ours(&["version"]).ok();
    assert!(
        !o.stdout.trim().is_empty(),
        "litestream version printed nothing: {o}"
    );
}

#[test]
fn progress_is_logged_without_a_terminal_and_quiet_with_json() {
    let f = fixture("cli-progress");
    let out = f.s.join("progress.db");
    let o = run_ours(&["restore", "-o", &out.to_string_lossy(), &f.url]).ok();
    // "restored … (N pages from F files) in … ms"
    let files = o
        .stdout
        .split(" pages from ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("file count in {}", o.stdout));
    let lines: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("restore progress"))
        .collect();
    assert!(!lines.is_empty(), "progress lines on stderr: {}", o.stderr);
    let last = lines.last().unwrap();
    assert!(
        last.contains(&format!("files {files}/{files}")) && last.contains("ETA 0s"),
        "the last line says every file is done: {last}"
    );
    assert_same_dump(&out, &f.db, "restore with progress lines vs source");

    let out = f.s.join("quiet.db");
    let o = run_ours(&["restore", "-json", "-o", &out.to_string_lossy(), &f.url]).ok();
    assert!(
        !o.stderr.contains("restore progress"),
        "-json restores quietly: {}",
        o.stderr
    );
    assert!(o.stdout.trim_start().starts_with('{'), "{}", o.stdout);
}

//! Assertions shared by the integration tests: a replica restores to exactly the source.

use std::path::{Path, PathBuf};

use crate::db::{dump, integrity, page_size, query};
use crate::procs::{restore_official, restore_ours};
use crate::replica::{coverage_gaps, describe, file_url, list_ltx, read_header};
use crate::scratch::Scratch;

/// Panics unless `.dump` of `actual` equals `.dump` of `expected`. On a mismatch both dumps
/// are written next to the databases and the first differing line is shown (dumps can be MBs).
#[track_caller]
pub fn assert_same_dump(actual: &Path, expected: &Path, context: &str) {
    let want = dump(expected);
    let got = dump(actual);
    if got == want {
        return;
    }
    let save = |db: &Path, text: &str| -> PathBuf {
        let mut p = db.as_os_str().to_os_string();
        p.push(".dump.sql");
        let p = PathBuf::from(p);
        let _ = std::fs::write(&p, text);
        p
    };
    let (gp, wp) = (save(actual, &got), save(expected, &want));
    let (gl, wl): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let at = gl
        .iter()
        .zip(&wl)
        .position(|(a, b)| a != b)
        .unwrap_or(gl.len().min(wl.len()));
    let clip = |s: Option<&&str>| -> String {
        s.map(|l| l.chars().take(300).collect())
            .unwrap_or_else(|| "<end of dump>".into())
    };
    panic!(
        "{context}: .dump of {} differs from {} ({} vs {} lines) at line {}:\n  got:  {}\n  want: {}\ndumps saved as {} and {}",
        actual.display(),
        expected.display(),
        gl.len(),
        wl.len(),
        at + 1,
        clip(gl.get(at)),
        clip(wl.get(at)),
        gp.display(),
        wp.display()
    );
}

/// Panics unless `PRAGMA integrity_check` of `db` is `ok`.
#[track_caller]
pub fn assert_integrity(db: &Path, context: &str) {
    let r = integrity(db);
    assert_eq!(r, "ok", "{context}: integrity_check of {}", db.display());
}

/// Checks the replica's shape: at least one file, a file starting at TXID 1, no TXID gap over
/// all levels, and headers that agree with the names (flags 2, page size, min/max).
#[track_caller]
pub fn assert_replica_well_formed(replica: &Path, want_page_size: Option<u32>) {
    let files = list_ltx(replica);
    assert!(
        !files.is_empty(),
        "no LTX files under {}/ltx/<level>/",
        replica.display()
    );
    assert!(
        files.iter().any(|f| f.min == 1),
        "no file starts at TXID 1: {}",
        describe(&files)
    );
    let gaps = coverage_gaps(&files);
    assert!(
        gaps.is_empty(),
        "TXID gaps {gaps:?} in {}",
        describe(&files)
    );
    for f in &files {
        let h = read_header(&f.path);
        assert_eq!(
            (h.min, h.max),
            (f.min, f.max),
            "header min/max of {} disagree with its name",
            f.path.display()
        );
        assert_eq!(
            h.flags,
            2,
            "flags of {} (0.5.17 readers need 0x2)",
            f.path.display()
        );
        assert!(h.commit >= 1, "commit 0 in {}", f.path.display());
        assert_eq!(
            h.pre_apply_checksum,
            0,
            "pre-apply checksum of {}",
            f.path.display()
        );
        if let Some(ps) = want_page_size {
            assert_eq!(h.page_size, ps, "page size in {}", f.path.display());
        }
    }
}

/// Restores `replica` with our CLI and with the official one into `scratch`, and asserts that
/// both equal `source` (`.dump`, integrity_check, page size). Returns the two restored paths.
#[track_caller]
pub fn assert_restores_to(
    scratch: &Scratch,
    replica: &Path,
    source: &Path,
    label: &str,
) -> (PathBuf, PathBuf) {
    assert_replica_well_formed(replica, Some(page_size(source)));
    let url = file_url(replica);
    let ours = scratch.join(format!("{label}-ours.db"));
    let official = scratch.join(format!("{label}-official.db"));
    restore_ours(&url, &ours);
    restore_official(&url, &official);
    for (db, who) in [(&ours, "our restore"), (&official, "official restore")] {
        let ctx = format!("{label}: {who}");
        assert_integrity(db, &ctx);
        assert_same_dump(db, source, &ctx);
        assert_eq!(page_size(db), page_size(source), "{ctx}: page_size");
    }
    (ours, official)
}

/// The integer column values returned by `sql` (one per line) on `db`.
#[track_caller]
pub fn query_ids(db: &Path, sql: &str) -> Vec<i64> {
    query(db, sql)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{sql}: not an integer: {l:?}"))
        })
        .collect()
}

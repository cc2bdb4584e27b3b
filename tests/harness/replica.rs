//! `litestream.yml` writing and looking at a file replica (`<root>/ltx/<level>/<min>-<max>.ltx`).

use std::path::{Path, PathBuf};

/// `file:///abs/path` for an absolute path.
pub fn file_url(path: &Path) -> String {
    assert!(
        path.is_absolute(),
        "file_url needs an absolute path: {}",
        path.display()
    );
    format!("file://{}", path.display())
}

/// One database entry of a Litestream 0.5 config with a file replica.
#[derive(Clone, Debug)]
pub struct DbEntry {
    pub path: PathBuf,
    pub replica: PathBuf,
    /// `sync-interval` value (`"1s"`, `"0"`, …); None leaves the default.
    pub sync_interval: Option<String>,
    /// Write the replica as `url: file:///abs` instead of `type: file` + `path:`.
    pub as_url: bool,
    /// Raw `key: value` lines at the database level (e.g. `checkpoint-interval: 1h`).
    pub keys: Vec<String>,
    /// `restore-if-db-not-exists: true`.
    pub restore_if_missing: bool,
}

/// A Litestream 0.5 `litestream.yml`, understood by both our extension and the official binary.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub dbs: Vec<DbEntry>,
    /// Raw top-level YAML lines appended as is (e.g. `levels: [{interval: 5s}]`).
    pub extra: Vec<String>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Adds a database replicated to the directory `replica` (`type: file`, `path:`).
    pub fn db(mut self, path: &Path, replica: &Path) -> Config {
        self.dbs.push(DbEntry {
            path: path.to_path_buf(),
            replica: replica.to_path_buf(),
            sync_interval: None,
            as_url: false,
            keys: Vec::new(),
            restore_if_missing: false,
        });
        self
    }

    /// Sets `sync-interval` on the last added database.
    pub fn sync_interval(mut self, value: &str) -> Config {
        self.dbs
            .last_mut()
            .expect("sync_interval after db()")
            .sync_interval = Some(value.to_string());
        self
    }

    /// Writes the last added database's replica as `url: file:///abs`.
    pub fn as_url(mut self) -> Config {
        self.dbs.last_mut().expect("as_url after db()").as_url = true;
        self
    }

    /// Adds `key: value` at the level of the last added database.
    pub fn db_key(mut self, key: &str, value: &str) -> Config {
        self.dbs
            .last_mut()
            .expect("db_key after db()")
            .keys
            .push(format!("{key}: {value}"));
        self
    }

    /// Sets `restore-if-db-not-exists: true` on the last added database.
    pub fn restore_if_missing(mut self) -> Config {
        self.dbs
            .last_mut()
            .expect("restore_if_missing after db()")
            .restore_if_missing = true;
        self
    }

    /// Appends a raw top-level YAML line.
    pub fn extra(mut self, line: &str) -> Config {
        self.extra.push(line.to_string());
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        for line in &self.extra {
            y.push_str(line);
            y.push('\n');
        }
        y.push_str("dbs:\n");
        for db in &self.dbs {
            y.push_str(&format!("  - path: {}\n", db.path.display()));
            for line in &db.keys {
                y.push_str(&format!("    {line}\n"));
            }
            if db.restore_if_missing {
                y.push_str("    restore-if-db-not-exists: true\n");
            }
            y.push_str("    replica:\n");
            if db.as_url {
                y.push_str(&format!("      url: {}\n", file_url(&db.replica)));
            } else {
                y.push_str("      type: file\n");
                y.push_str(&format!("      path: {}\n", db.replica.display()));
            }
            if let Some(si) = &db.sync_interval {
                y.push_str(&format!("      sync-interval: {si}\n"));
            }
        }
        y
    }

    /// Writes the YAML to `path` and returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_yaml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// A replica file name, parsed the way Litestream lists them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LtxName {
    pub level: u32,
    pub min: u64,
    pub max: u64,
    pub path: PathBuf,
}

fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// Parses `<16 lowercase hex>-<16 lowercase hex>.ltx`.
pub fn parse_ltx_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".ltx")?;
    let (a, b) = stem.split_once('-')?;
    Some((parse_hex16(a)?, parse_hex16(b)?))
}

/// All LTX files of a file replica, sorted by (level, min, max). Other files are ignored, as
/// Litestream ignores them. A missing replica gives an empty list.
pub fn list_ltx(replica: &Path) -> Vec<LtxName> {
    let mut out = Vec::new();
    let Ok(levels) = std::fs::read_dir(replica.join("ltx")) else {
        return out;
    };
    for level in levels.flatten() {
        let Some(level_no) = level
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(level.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Some((min, max)) = f.file_name().to_str().and_then(parse_ltx_name) {
                out.push(LtxName {
                    level: level_no,
                    min,
                    max,
                    path: f.path(),
                });
            }
        }
    }
    out.sort();
    out
}

/// The highest MaxTXID in the replica (0 when empty).
pub fn max_txid(replica: &Path) -> u64 {
    list_ltx(replica).iter().map(|f| f.max).max().unwrap_or(0)
}

/// TXID ranges `[from, to]` within `[1, max]` that no file (at any level) covers.
pub fn coverage_gaps(files: &[LtxName]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = files.iter().map(|f| (f.min, f.max)).collect();
    ranges.sort();
    let mut gaps = Vec::new();
    let mut covered = 0u64;
    for (min, max) in ranges {
        if min > covered + 1 {
            gaps.push((covered + 1, min - 1));
        }
        covered = covered.max(max);
    }
    gaps
}

/// A compact listing for assertion messages: `L0 1-1, L0 2-2, L9 1-2`.
pub fn describe(files: &[LtxName]) -> String {
    files
        .iter()
        .map(|f| format!("L{} {:x}-{:x}", f.level, f.min, f.max))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(level: u32, min: u64, max: u64) -> LtxName {
        LtxName {
            level,
            min,
            max,
            path: PathBuf::new(),
        }
    }

    #[test]
    fn names_parse_lowercase_only() {
        assert_eq!(
            parse_ltx_name("0000000000000001-000000000000001a.ltx"),
            Some((1, 0x1a))
        );
        assert_eq!(
            parse_ltx_name("0000000000000001-000000000000001A.ltx"),
            None
        );
        assert_eq!(
            parse_ltx_name("0000000000000001-0000000000000001.ltx.tmp"),
            None
        );
        assert_eq!(parse_ltx_name("1-1.ltx"), None);
    }

    #[test]
    fn gaps_are_found_across_levels() {
        assert!(coverage_gaps(&[n(9, 1, 4), n(0, 5, 5), n(0, 6, 6)]).is_empty());
        assert_eq!(coverage_gaps(&[n(0, 1, 1), n(0, 3, 3)]), vec![(2, 2)]);
        assert_eq!(coverage_gaps(&[n(0, 2, 2)]), vec![(1, 1)]);
        assert!(coverage_gaps(&[n(1, 1, 4), n(0, 2, 2), n(0, 5, 6)]).is_empty());
    }

    #[test]
    fn config_yaml_has_both_replica_forms() {
        let y = Config::new()
            .db(Path::new("/d/a.db"), Path::new("/d/r"))
            .sync_interval("0")
            .db(Path::new("/d/b.db"), Path::new("/d/r2"))
            .as_url()
            .to_yaml();
        assert!(y.contains("  - path: /d/a.db\n    replica:\n      type: file\n      path: /d/r\n      sync-interval: 0\n"), "{y}");
        assert!(y.contains("      url: file:///d/r2\n"), "{y}");
    }
}

/// The fields of an LTX v3 header (first 100 bytes, big-endian) that the tests check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LtxHeader {
    pub flags: u32,
    pub page_size: u32,
    pub commit: u32,
    pub min: u64,
    pub max: u64,
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
}

/// Reads and minimally decodes the header of an LTX file; panics when it is not one.
#[track_caller]
pub fn read_header(path: &Path) -> LtxHeader {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.len() >= 100 && &bytes[..4] == b"LTX1",
        "{} is not an LTX file (len {}, magic {:?})",
        path.display(),
        bytes.len(),
        &bytes[..bytes.len().min(4)]
    );
    let u32_at = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_be_bytes(bytes[o..o + 8].try_into().unwrap());
    LtxHeader {
        flags: u32_at(4),
        page_size: u32_at(8),
        commit: u32_at(12),
        min: u64_at(16),
        max: u64_at(24),
        timestamp_ms: u64_at(32) as i64,
        pre_apply_checksum: u64_at(40),
        wal_offset: u64_at(48) as i64,
        wal_size: u64_at(56) as i64,
    }
}

fn uvarint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut x = 0u64;
    let mut shift = 0;
    loop {
        let c = *b.get(*i)?;
        *i += 1;
        x |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return Some(x);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The page numbers an LTX file holds, read from its page index (which sits before the
/// 16-byte trailer and ends with its own u64 length). Panics when the index is malformed.
#[track_caller]
pub fn ltx_page_numbers(path: &Path) -> Vec<u32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let n = b.len();
    assert!(
        n >= 100 + 6 + 1 + 8 + 16,
        "{} is too short for an LTX file",
        path.display()
    );
    let idx_len = u64::from_be_bytes(b[n - 24..n - 16].try_into().unwrap()) as usize;
    assert!(
        idx_len < n - 24,
        "{}: bad page index length {idx_len}",
        path.display()
    );
    let start = n - 24 - idx_len;
    let mut i = start;
    let mut pages = Vec::new();
    loop {
        let pgno = uvarint(&b, &mut i)
            .unwrap_or_else(|| panic!("{}: truncated page index", path.display()));
        if pgno == 0 {
            break;
        }
        let _offset = uvarint(&b, &mut i);
        let _size = uvarint(&b, &mut i);
        pages.push(pgno as u32);
    }
    assert_eq!(i, n - 24, "{}: page index length mismatch", path.display());
    pages
}

/// True when the file holds every page 1..=commit (except the lock page): a full database.
pub fn is_full_database(path: &Path) -> bool {
    let h = read_header(path);
    let lock = (0x4000_0000 / h.page_size) + 1;
    let want: Vec<u32> = (1..=h.commit).filter(|&p| p != lock).collect();
    ltx_page_numbers(path) == want
}

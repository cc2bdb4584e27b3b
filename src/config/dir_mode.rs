//! Directory mode (`dir`, `pattern`, `recursive`, `watch`, `meta-dir`; Litestream 0.5's keys):
//! every SQLite database under `dir` whose file name matches `pattern` is replicated to
//! `<replica path>/<path relative to dir>`, where the official binary puts it.
//!
//! `pattern` follows Go's `filepath.Match` (`*`, `?`, `[a-z]`, `[^…]`, `\` escapes) and is
//! matched against the file name only. In-process, `watch: true` means: any file under `dir`
//! whose name matches `pattern` that the process opens through the VFS is replicated, also when
//! it was created after start-up. Without `watch`, the databases are the matching files that
//! existed when the configuration was loaded.

use std::path::{Component, Path, PathBuf};

use super::{Backend, DbConfig, META_DIR_SUFFIX};

/// Deepest directory nesting a `recursive` scan descends into: bounds the scan of a directory
/// tree with a symlink loop or an unexpectedly deep layout (tenant trees are a few levels).
const MAX_SCAN_DEPTH: usize = 32;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// One `dbs[]` entry in directory mode.
#[derive(Debug, Clone)]
pub struct DirConfig {
    /// Absolute path of the directory.
    pub dir: PathBuf,
    pub pattern: String,
    pub recursive: bool,
    pub watch: bool,
    /// `meta-dir`: local state of `dir/<rel>` goes to `<meta-dir>/<rel>`; default: beside
    /// each database, as for a `path` entry.
    pub meta_dir: Option<PathBuf>,
    /// Replica and options shared by every database of the directory (its `path` is `dir`).
    pub template: DbConfig,
}

impl DirConfig {
    /// The configuration of the database at `path` (absolute, cleaned) when it is under `dir`
    /// (directly, or at any depth with `recursive`) and its name matches `pattern`.
    pub fn db_for(&self, path: &Path) -> Option<DbConfig> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let (name, parents) = parts.split_last()?;
        if (!self.recursive && !parents.is_empty()) || !glob_match(&self.pattern, name) {
            return None;
        }
        let mut db = self.template.clone();
        db.path = path.to_path_buf();
        db.meta_path = self.meta_dir.as_ref().map(|m| {
            let mut p = m.join(rel);
            p.set_file_name(format!(".{name}{META_DIR_SUFFIX}"));
            p
        });
        db.replica.backend = self.template.replica.backend.under(&parts.join("/"))?;
        Some(db)
    }

    /// The SQLite databases under `dir` that match, sorted. Files that do not start with
    /// SQLite's header (including empty ones) are not databases yet and are left out, as the
    /// official binary does; `watch` picks them up when they are opened.
    pub fn scan(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        let mut stack = vec![(self.dir.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let path = entry.path();
                if kind.is_dir() {
                    if self.recursive && depth < MAX_SCAN_DEPTH {
                        stack.push((path, depth + 1));
                    }
                } else if kind.is_file() && self.db_for(&path).is_some() && is_sqlite(&path) {
                    found.push(path);
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == SQLITE_HEADER)
}

impl Backend {
    /// This replica's location with `rel` (a `/`-separated relative path) appended: where
    /// the official binary puts a database of a directory entry. `None` for NATS, whose
    /// objects have no path prefix (directory mode refuses it).
    pub fn under(&self, rel: &str) -> Option<Backend> {
        let join = |base: &str| {
            let base = base.trim_end_matches('/');
            if base.is_empty() {
                rel.to_string()
            } else {
                format!("{base}/{rel}")
            }
        };
        let mut b = self.clone();
        match &mut b {
            Backend::File { path } => *path = path.join(rel),
            Backend::S3(c) => c.path = join(&c.path),
            Backend::Abs(c) => c.path = join(&c.path),
            Backend::Gs(c) => c.path = join(&c.path),
            Backend::Webdav(c) => c.path = join(&c.path),
            Backend::Sftp(c) => c.path = join(&c.path),
            Backend::Oss(c) => c.path = join(&c.path),
            Backend::Nats(_) => return None,
        }
        Some(b)
    }
}

/// Why a directory entry's `pattern` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "pattern {0:?} contains '/': it is matched against file names only; use \
         `recursive: true` for subdirectories"
    )]
    HasSlash(String),
    #[error(
        "pattern {0:?} is malformed (an unclosed '[' or a trailing '\\'); use Go glob syntax \
         such as \"*.db\""
    )]
    Malformed(String),
}

/// Checks `pattern`'s syntax (Go's `filepath.ErrBadPattern` cases).
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    if pattern.contains('/') {
        return Err(PatternError::HasSlash(pattern.to_string()));
    }
    // Matching against a name that exercises every branch reports a malformed class or escape.
    match match_from(pattern.as_bytes(), b"") {
        Err(()) => Err(PatternError::Malformed(pattern.to_string())),
        Ok(_) => scan_syntax(pattern.as_bytes()),
    }
}

/// Walks the whole pattern once so that errors after the first `*` are reported too.
fn scan_syntax(p: &[u8]) -> Result<(), PatternError> {
    let bad = || {
        Err(PatternError::Malformed(
            String::from_utf8_lossy(p).into_owned(),
        ))
    };
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' if i + 1 >= p.len() => return bad(),
            b'\\' => i += 2,
            b'[' => match class(&p[i + 1..], None) {
                Ok((_, used)) => i += 1 + used,
                Err(()) => return bad(),
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `filepath.Match(pattern, name)` for a name without separators; a malformed pattern
/// matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match_from(pattern.as_bytes(), name.as_bytes()).unwrap_or(false)
}

fn match_from(p: &[u8], n: &[u8]) -> Result<bool, ()> {
    match p.first() {
        None => Ok(n.is_empty()),
        Some(b'*') => {
            // Try every split, shortest first.
            for skip in 0..=n.len() {
                if match_from(&p[1..], &n[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some(b'?') => Ok(!n.is_empty() && match_from(&p[1..], &n[char_len(n)..])?),
        Some(b'[') => {
            let c = n.first().copied();
            let (hit, used) = class(&p[1..], c)?;
            Ok(c.is_some() && hit && match_from(&p[1 + used..], &n[1..])?)
        }
        Some(b'\\') => {
            let lit = *p.get(1).ok_or(())?;
            Ok(n.first() == Some(&lit) && match_from(&p[2..], &n[1..])?)
        }
        Some(&lit) => Ok(n.first() == Some(&lit) && match_from(&p[1..], &n[1..])?),
    }
}

/// Length in bytes of the UTF-8 character `n` starts with (`?` matches one character).
fn char_len(n: &[u8]) -> usize {
    std::str::from_utf8(&n[..n.len().min(4)])
        .ok()
        .or_else(|| std::str::from_utf8(&n[..1]).ok())
        .and_then(|s| s.chars().next())
        .map_or(1, char::len_utf8)
}

/// A character class after its `[`: whether `c` is in it, and the bytes used (with the `]`).
fn class(p: &[u8], c: Option<u8>) -> Result<(bool, usize), ()> {
    let mut i = 0;
    let negated = p.first() == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = match p.get(i) {
            None => return Err(()),
            Some(b']') if !first => break,
            Some(b'\\') => {
                i += 1;
                *p.get(i).ok_or(())?
            }
            Some(&b) => b,
        };
        i += 1;
        first = false;
        let hi = if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&b| b != b']') {
            i += 1;
            let b = match p[i] {
                b'\\' => {
                    i += 1;
                    *p.get(i).ok_or(())?
                }
                b => b,
            };
            i += 1;
            b
        } else {
            lo
        };
        if c.is_some_and(|c| lo <= c && c <= hi) {
            hit = true;
        }
    }
    Ok((hit != negated, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_glob_semantics() {
        for (p, n, want) in [
            ("*.db", "a.db", true),
            ("*.db", "a.db-wal", false),
            ("*.db", ".a.db", true),
            ("tenant-?.db", "tenant-1.db", true),
            ("tenant-?.db", "tenant-12.db", false),
            ("[ab]*.db", "b1.db", true),
            ("[^ab]*.db", "b1.db", false),
            ("[a-c].db", "c.db", true),
            ("\\*.db", "*.db", true),
            ("\\*.db", "x.db", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    fn parse(yaml: &str) -> Result<crate::config::Config, String> {
        let env = crate::config::resolve::Env {
            cwd: Path::new("/"),
            home: None,
        };
        crate::config::resolve::parse(yaml, Some(Path::new("litestream.yml")), &env)
            .map_err(|e| e.to_string())
    }

    /// A tenant tree: `a.db`, `skip.txt` (a database the pattern excludes), `sub/b.db`,
    /// `sub/deeper/c.db`, and `empty.db` (not a database yet).
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let db = |rel: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut bytes = SQLITE_HEADER.to_vec();
            bytes.resize(512, 0);
            std::fs::write(p, bytes).unwrap();
        };
        db("a.db");
        db("skip.txt");
        db("sub/b.db");
        db("sub/deeper/c.db");
        std::fs::write(d.path().join("empty.db"), b"").unwrap();
        d
    }

    fn yaml(dir: &Path, extra: &str) -> String {
        format!(
            "dbs:\n  - dir: {}\n    pattern: '*.db'\n{extra}    replica:\n      type: s3\n      bucket: b\n      path: tenants\n",
            dir.display()
        )
    }

    #[test]
    fn matched_databases_are_replicated_under_their_relative_path() {
        let t = tree();
        let c = parse(&yaml(
            t.path(),
            "    recursive: true\n    meta-dir: /meta\n",
        ))
        .unwrap();
        let got: Vec<(String, String)> = c
            .dbs
            .iter()
            .map(|d| {
                let rel = d.path.strip_prefix(t.path()).unwrap().display().to_string();
                (rel, d.replica.url())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.db".to_string(), "s3://b/tenants/a.db".to_string()),
                ("sub/b.db".into(), "s3://b/tenants/sub/b.db".into()),
                (
                    "sub/deeper/c.db".into(),
                    "s3://b/tenants/sub/deeper/c.db".into()
                ),
            ]
        );
        assert_eq!(
            c.dbs[1].meta_path.as_deref(),
            Some(Path::new("/meta/sub/.b.db-liblitestream"))
        );
        // Without `watch`, a database created later is not replicated by the extension; the
        // CLI still finds where it would be.
        let later = t.path().join("later.db");
        assert!(c.replicated_db(&later).is_none());
        assert_eq!(
            c.find_db(&later).unwrap().replica.url(),
            "s3://b/tenants/later.db"
        );
        assert!(c.find_db(&t.path().join("skip.txt")).is_none());
    }

    #[test]
    fn watch_replicates_matching_files_opened_later_and_not_recursive_stays_flat() {
        let t = tree();
        let c = parse(&yaml(t.path(), "    watch: true\n")).unwrap();
        assert_eq!(
            c.dbs.len(),
            1,
            "only a.db: not recursive, empty.db is no database yet"
        );
        let later = c.replicated_db(&t.path().join("empty.db")).unwrap();
        assert_eq!(later.replica.url(), "s3://b/tenants/empty.db");
        assert!(c.replicated_db(&t.path().join("sub/b.db")).is_none());
        assert!(c.replicated_db(&t.path().join("a.db-wal")).is_none());
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let t = tree();
        let e = parse(&yaml(&t.path().join("missing"), "")).unwrap_err();
        assert!(
            e.contains("dbs[0].dir:") && e.contains("create the directory or fix `dir`"),
            "{e}"
        );
        let e = parse(&yaml(&t.path().join("a.db"), "")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let none = format!(
            "dbs:\n  - dir: {}\n    pattern: '*.sqlite'\n    replica: {{url: file:///r}}\n",
            t.path().display()
        );
        let e = parse(&none).unwrap_err();
        assert!(
            e.contains("dbs[0].pattern: \"*.sqlite\" matches no SQLite database")
                && e.contains("watch: true"),
            "{e}"
        );
        assert!(parse(&none.replace("'*.sqlite'", "'*.sqlite'\n    watch: true")).is_ok());
        let e = parse(&yaml(t.path(), "    meta-path: /m\n")).unwrap_err();
        assert!(e.contains("use `meta-dir`"), "{e}");
        let e = parse(&format!(
            "dbs:\n  - dir: {}\n    replica: {{url: file:///r}}\n",
            t.path().display()
        ))
        .unwrap_err();
        assert!(e.contains("needs `pattern`"), "{e}");
        let e = parse(&yaml(t.path(), "    path: /x.db\n")).unwrap_err();
        assert!(e.contains("`path` and `dir` are both set"), "{e}");
        // A `path` entry that a `dir` entry also matches, in either order.
        let both = format!(
            "dbs:\n  - path: {0}/a.db\n    replica: {{url: file:///single}}\n  - dir: {0}\n    pattern: '*.db'\n    replica: {{url: file:///r}}\n",
            t.path().display()
        );
        let e = parse(&both).unwrap_err();
        assert!(
            e.contains("dbs[0].path:") && e.contains("is also matched by dbs[1]"),
            "{e}"
        );
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(check_pattern("*.db").is_ok());
        assert!(check_pattern("[a-").is_err());
        assert!(check_pattern("x\\").is_err());
        assert!(check_pattern("*[").is_err());
        assert!(check_pattern("sub/*.db").is_err());
    }
}

//! `$VAR` / `${VAR}` expansion with Go's `os.Expand` rules, and path resolution like
//! Litestream's `expand` (`~` → home, relative → current directory, cleaned).
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// Why a path of the config could not be made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("cannot expand {path:?}: HOME is not set; use an absolute path")]
    NoHome { path: String },
}

/// [`expand_env_noting_unset`] without the list of unset variables.
#[cfg(test)]
pub fn expand_env(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_env_noting_unset(s, lookup).0
}

/// Expands `$NAME` and `${NAME}` exactly like Go's `os.Expand` (which Litestream uses on the
/// whole config file): unset variables become empty, there is no escape (`$$` looks up the
/// variable `$`), `${}` and an unclosed `${` are dropped, a `$` not followed by a name is kept.
/// Also returns each variable that was not set, with its line (1-based) in `s`, in order of
/// appearance, so that an error about a key left empty can name it.
pub(crate) fn expand_env_noting_unset(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (String, Vec<(usize, String)>) {
    let bytes = s.as_bytes();
    let mut unset = Vec::new();
    // Line of byte `j`, counted incrementally: `line_at` is the first byte not yet counted.
    let (mut line, mut line_at) = (1usize, 0usize);
    let mut out = String::with_capacity(s.len());
    let mut i = 0; // start of the text not yet copied
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&s[i..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match name {
                None if width > 0 => {} // bad syntax: eat it
                None => out.push('$'),
                Some(name) => match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        line += bytes[line_at..j].iter().filter(|&&c| c == b'\n').count();
                        line_at = j;
                        unset.push((line, name.to_string()));
                    }
                },
            }
            j += width;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    (out, unset)
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_alnum(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The variable name after a `$` and how many bytes it used (Go's `getShellName`).
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => (None, 2),
            Some(n) => (Some(&s[1..=n]), n + 2),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let n = b.iter().take_while(|&&c| is_alnum(c)).count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

/// The process environment as Litestream sees it, plus `$PID`.
pub fn process_env(name: &str) -> Option<String> {
    if name == "PID" {
        return Some(std::process::id().to_string());
    }
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Makes `p` absolute the way Litestream does: strips a `sqlite://`/`sqlite3://` prefix,
/// replaces a leading `~` or `~/` by `home`, joins relative paths to `cwd`, and cleans `.`
/// and `..` lexically (like Go's `filepath.Abs`). `~user` is not expanded (Go does not).
pub fn resolve_path(p: &str, cwd: &Path, home: Option<&Path>) -> Result<PathBuf, PathError> {
    let p = strip_sqlite_prefix(p);
    let joined = if p == "~" || p.starts_with("~/") {
        let home = home.ok_or_else(|| PathError::NoHome {
            path: p.to_string(),
        })?;
        home.join(p.trim_start_matches('~').trim_start_matches('/'))
    } else {
        cwd.join(p)
    };
    Ok(clean(&joined))
}

/// `sqlite://x.db` and `sqlite3://x.db` name the file `x.db` (Litestream accepts both).
pub fn strip_sqlite_prefix(s: &str) -> &str {
    s.strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s)
}

/// Lexical clean: drops `.`, resolves `..` against earlier components, never above `/`.
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !p.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `$HOME` when set and not empty.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "B" => Some("bee".into()),
            "X_1" => Some("x".into()),
            "1" => Some("one".into()),
            "$" => Some("dollar".into()),
            _ => None,
        }
    }

    #[test]
    fn expand_table() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$B", "bee"),
            ("${B}", "bee"),
            ("a$B.c", "abee.c"),
            ("a${B}c", "abeec"),
            ("$Bc", ""),
            ("$UNSET|", "|"),
            ("${UNSET}", ""),
            ("$X_1/y", "x/y"),
            ("$", "$"),
            ("a$", "a$"),
            ("$ x", "$ x"),
            ("$/x", "$/x"),
            ("$$", "dollar"),
            ("$1x", "onex"),
            ("${1}", "one"),
            ("${}x", "x"),
            ("${B", "B"),
            ("${B:-d}", ""),
            ("é$B€", "ébee€"),
            ("path: ${HOME}/db", "path: /home/u/db"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, &env), *want, "{input:?}");
        }
    }

    #[test]
    fn pid_is_expanded() {
        assert_eq!(
            expand_env("$PID", &process_env),
            std::process::id().to_string()
        );
    }

    #[test]
    fn resolve_table() {
        let cwd = Path::new("/srv/app");
        let home = Some(Path::new("/home/u"));
        let cases: &[(&str, &str)] = &[
            ("/abs/db.sqlite", "/abs/db.sqlite"),
            ("db.sqlite", "/srv/app/db.sqlite"),
            ("./db.sqlite", "/srv/app/db.sqlite"),
            ("../x/./db", "/srv/x/db"),
            ("/a/b/../c/", "/a/c"),
            ("~", "/home/u"),
            ("~/data/db", "/home/u/data/db"),
            ("~user/db", "/srv/app/~user/db"),
            ("sqlite:///abs/db", "/abs/db"),
            ("sqlite3://rel.db", "/srv/app/rel.db"),
            ("/../..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(
                resolve_path(input, cwd, home).unwrap(),
                PathBuf::from(want),
                "{input}"
            );
        }
        let err = resolve_path("~/x", cwd, None).unwrap_err().to_string();
        assert!(err.contains("HOME is not set"), "{err}");
    }

    proptest! {
        /// Text without `$` is never changed; text made only of known `${NAME}` expands to
        /// the concatenated values.
        #[test]
        fn expansion_properties(text in "[^$]{0,40}", names in proptest::collection::vec(0usize..3, 0..6)) {
            prop_assert_eq!(expand_env(&text, &env), text.clone());
            let table = [("B", "bee"), ("X_1", "x"), ("NOPE", "")];
            let input: String = names.iter().map(|&i| format!("{}${{{}}}", text, table[i].0)).collect();
            let want: String = names.iter().map(|&i| format!("{}{}", text, table[i].1)).collect();
            prop_assert_eq!(expand_env(&input, &env), want);
        }

        #[test]
        fn expansion_never_panics(s in "[$a-z{}_0-9é ]{0,30}") {
            let _ = expand_env(&s, &env);
        }
    }
}

//! [`ConfigError`] and the bookkeeping that lets every message name the file, the line and
//! column, and the key path (`dbs[0].replica.sync-interval`).
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {} does not exist: create it, or point LITESTREAM_CONFIG at an existing file",
        path.display()
    )]
    NotFound { path: PathBuf },
    /// A malformed file or a bad value. `key` is the path of the offending key, e.g.
    /// `dbs[0].replica.sync-interval` (empty for the whole document or a lone URL/duration).
    #[error("{}", render_invalid(file.as_deref(), *line, *column, key, message))]
    Invalid {
        file: Option<PathBuf>,
        line: Option<usize>,
        column: Option<usize>,
        key: String,
        message: String,
    },
    /// Flow collections (`[…]`, `{…}`) nested deeper than any config needs: refused before
    /// the YAML parser, whose work grows with the square of the depth, sees them.
    #[error(
        "{}line {line}: brackets (`[` or `{{`) nested more than {limit} levels deep; a \
         litestream.yml needs a few at most: look for unbalanced or repeated brackets",
        file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default()
    )]
    TooDeep {
        file: Option<PathBuf>,
        line: usize,
        limit: usize,
    },
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// An error about a value that did not come from a file (URI parameter, CLI flag).
    pub(crate) fn value(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            line: None,
            column: None,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Adds to an [`ConfigError::Invalid`] the environment variables that were not set when the
    /// file was expanded (they became empty text, which often is why a required key is
    /// missing): those on the error's line, else all of them. `unset` holds (line, name).
    pub(crate) fn with_unset_vars(self, unset: &[(usize, String)]) -> Self {
        let ConfigError::Invalid {
            file,
            line,
            column,
            key,
            mut message,
        } = self
        else {
            return self;
        };
        let on_line: Vec<&str> = unset
            .iter()
            .filter(|(l, _)| Some(*l) == line)
            .map(|(_, n)| n.as_str())
            .collect();
        let mut names: Vec<&str> = if on_line.is_empty() {
            unset.iter().map(|(_, n)| n.as_str()).collect()
        } else {
            on_line
        };
        names.sort_unstable();
        names.dedup();
        if !names.is_empty() {
            let list: Vec<String> = names.iter().map(|n| format!("${{{n}}}")).collect();
            let verb = if names.len() == 1 { "is" } else { "are" };
            message.push_str(&format!(
                " (environment variable {} {verb} not set and expanded to empty text: set it, \
                 or write the value in the file)",
                list.join(", ")
            ));
        }
        ConfigError::Invalid {
            file,
            line,
            column,
            key,
            message,
        }
    }
}

fn render_invalid(
    file: Option<&Path>,
    line: Option<usize>,
    column: Option<usize>,
    key: &str,
    message: &str,
) -> String {
    let mut parts = Vec::new();
    if let Some(f) = file {
        parts.push(f.display().to_string());
    }
    match (line, column) {
        (Some(l), Some(c)) => parts.push(format!("line {l} column {c}")),
        (Some(l), None) => parts.push(format!("line {l}")),
        _ => {}
    }
    if !key.is_empty() {
        parts.push(key.to_string());
    }
    parts.push(message.to_string());
    parts.join(": ")
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `dbs[0].replica.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The text being parsed and where it came from: turns problems into [`ConfigError`]s.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: Option<&'a Path>,
}

impl Source<'_> {
    /// An error at `path`; the line and column are those of the value at `path` (or of the
    /// nearest enclosing value that exists in the text).
    pub fn err(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let loc = (0..=path.0.len())
            .rev()
            .find_map(|n| locate(self.text, &path.0[..n]));
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// Converts a serde error, keeping the path serde_path_to_error tracked and the location
    /// serde_yaml_ng recorded, and removing both from the inner message.
    pub fn serde(&self, e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> ConfigError {
        let key = match e.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let inner = e.into_inner();
        let loc = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        if let Some((l, c)) = loc {
            message = message.replacen(&format!(" at line {l} column {c}"), "", 1);
        }
        if !key.is_empty() {
            if let Some(rest) = message.strip_prefix(&format!("{key}: ")) {
                message = rest.to_string();
            }
        }
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key,
            message,
        }
    }
}

const PROBE: &str = "\u{0}config-probe";

/// Line and column (1-based) of the value at `path` in the YAML `text`, found by walking the
/// document and failing on purpose at that value, so that serde_yaml_ng records its mark.
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe { path }).deserialize(de) {
        Err(e) if e.to_string().contains(PROBE) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

struct Probe<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        let mut i = 0;
        loop {
            let found = if *first == Seg::Index(i) {
                seq.next_element_seed(Probe { path: rest })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if found.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            match (first, key.as_str()) {
                (Seg::Key(want), Some(k)) if want == k => {
                    map.next_value_seed(Probe { path: rest })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl Probe<'_> {
    fn leaf<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(PROBE))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
top: 1
dbs:
  - path: /a
    replica:
      url: s3://b/p
  - path: /b
    replicas:
      - path: x
";

    fn kp(segs: &[Seg]) -> Vec<Seg> {
        segs.to_vec()
    }

    #[test]
    fn locate_values() {
        use Seg::{Index as I, Key as K};
        let k = |s: &str| K(s.to_string());
        assert_eq!(locate(DOC, &kp(&[k("top")])), Some((1, 6)));
        assert_eq!(
            locate(DOC, &kp(&[k("dbs"), I(0), k("path")])),
            Some((3, 11))
        );
        assert_eq!(
            locate(DOC, &kp(&[k("dbs"), I(0), k("replica")])),
            Some((5, 7))
        );
        assert_eq!(
            locate(DOC, &kp(&[k("dbs"), I(1), k("replicas"), I(0), k("path")])),
            Some((8, 15))
        );
        assert_eq!(locate(DOC, &kp(&[k("dbs"), I(2)])), None);
        assert_eq!(locate(DOC, &kp(&[k("nope")])), None);
        assert_eq!(locate(DOC, &kp(&[k("top"), k("x")])), None);
        assert_eq!(locate("a: [", &kp(&[k("b")])), None);
    }

    #[test]
    fn error_rendering() {
        let src = Source {
            text: DOC,
            file: Some(Path::new("litestream.yml")),
        };
        let path = KeyPath::root().key("dbs").index(1).key("replica");
        let e = src.err(&path, "missing");
        assert_eq!(
            e.to_string(),
            "litestream.yml: line 6 column 5: dbs[1].replica: missing"
        );
        let e = ConfigError::value("", "bad url");
        assert_eq!(e.to_string(), "bad url");
    }
}

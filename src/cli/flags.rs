//! A small command-line flag parser with the rules of Go's `flag` package, which Litestream
//! uses: `-name`, `--name`, `-name=value`, `-name value` (not for booleans), parsing stops at
//! the first non-flag argument or after `--`.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// `-h` or `-help` was given: print usage.
    Help,
    /// A message in Go's words, e.g. `flag provided but not defined: -x`.
    Invalid(String),
}

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagError::Help => f.write_str("flag: help requested"),
            FlagError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FlagError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

/// The flags a command accepts.
#[derive(Debug, Default, Clone)]
pub struct FlagSet {
    defs: HashMap<&'static str, Kind>,
}

/// The result of parsing: flag values (last one wins) and the remaining arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    values: HashMap<String, String>,
    pub args: Vec<String>,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl FlagSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A boolean flag: `-name` or `-name=false`.
    pub fn bool(mut self, name: &'static str) -> Self {
        self.defs.insert(name, Kind::Bool);
        self
    }

    /// A flag with a value: `-name value` or `-name=value`.
    pub fn value(mut self, name: &'static str) -> Self {
        self.defs.insert(name, Kind::Value);
        self
    }

    pub fn parse(&self, args: &[String]) -> Result<Parsed, FlagError> {
        let mut out = Parsed::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg.len() < 2 || !arg.starts_with('-') {
                break;
            }
            let mut body = &arg[1..];
            if let Some(rest) = body.strip_prefix('-') {
                if rest.is_empty() {
                    i += 1; // "--" ends the flags
                    break;
                }
                body = rest;
            }
            if body.starts_with('-') || body.starts_with('=') {
                return Err(FlagError::Invalid(format!("bad flag syntax: {arg}")));
            }
            i += 1;
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let kind = match self.defs.get(name) {
                Some(k) => *k,
                None if name == "h" || name == "help" => return Err(FlagError::Help),
                None => {
                    return Err(FlagError::Invalid(format!(
                        "flag provided but not defined: -{name}"
                    )))
                }
            };
            let value = match (kind, inline) {
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match parse_bool(v) {
                    Some(b) => b.to_string(),
                    None => {
                        return Err(FlagError::Invalid(format!(
                            "invalid boolean value {v:?} for -{name}: parse error"
                        )))
                    }
                },
                (Kind::Value, Some(v)) => v.to_string(),
                (Kind::Value, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => {
                        return Err(FlagError::Invalid(format!(
                            "flag needs an argument: -{name}"
                        )))
                    }
                },
            };
            out.values.insert(name.to_string(), value);
        }
        out.args = args[i..].to_vec();
        Ok(out)
    }
}

impl Parsed {
    /// The value of a value flag, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether a flag appeared at all (`-force=false` counts as given).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A boolean flag's value (false when absent).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    /// The one positional `DB_PATH` of `litestream <command>`, or the official error texts.
    pub fn db_path_arg(&self, command: &str) -> Result<String, super::CliError> {
        match self.args.as_slice() {
            [] => Err(super::CliError::Usage(format!(
                "database path required; usage: litestream {command} /path/to/db"
            ))),
            [a] => Ok(a.clone()),
            _ => Err(super::CliError::Usage("too many arguments".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set() -> FlagSet {
        FlagSet::new()
            .value("o")
            .value("txid")
            .bool("force")
            .bool("dry-run")
    }

    fn p(args: &[&str]) -> Result<Parsed, FlagError> {
        set().parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn forms() {
        let r = p(&["-o", "a.db", "--txid=00ff", "-force", "url"]).unwrap();
        assert_eq!(r.get("o"), Some("a.db"));
        assert_eq!(r.get("txid"), Some("00ff"));
        assert!(r.flag("force"));
        assert!(!r.flag("dry-run"));
        assert_eq!(r.args, vec!["url"]);
        let r = p(&["--o", "x", "-o=y", "-force=false"]).unwrap();
        assert_eq!(r.get("o"), Some("y"), "last one wins");
        assert!(!r.flag("force"));
        assert!(r.is_set("force"));
        assert_eq!(r.args, Vec::<String>::new());
        let r = p(&["-o="]).unwrap();
        assert_eq!(r.get("o"), Some(""));
    }

    #[test]
    fn stops_at_first_argument_and_double_dash() {
        let r = p(&["db", "-force"]).unwrap();
        assert_eq!(r.args, vec!["db", "-force"]);
        assert!(!r.flag("force"));
        let r = p(&["-force", "--", "-o"]).unwrap();
        assert_eq!(r.args, vec!["-o"]);
        let r = p(&["-", "x"]).unwrap();
        assert_eq!(r.args, vec!["-", "x"]);
        // A boolean does not take the next argument.
        let r = p(&["-force", "false"]).unwrap();
        assert!(r.flag("force"));
        assert_eq!(r.args, vec!["false"]);
    }

    #[test]
    fn errors_like_go() {
        let e = |a: &[&str]| p(a).unwrap_err().to_string();
        assert_eq!(e(&["-x"]), "flag provided but not defined: -x");
        assert_eq!(e(&["--nope=3"]), "flag provided but not defined: -nope");
        assert_eq!(e(&["-o"]), "flag needs an argument: -o");
        assert_eq!(e(&["---o"]), "bad flag syntax: ---o");
        assert_eq!(e(&["-=x"]), "bad flag syntax: -=x");
        assert_eq!(
            e(&["-force=maybe"]),
            "invalid boolean value \"maybe\" for -force: parse error"
        );
        assert_eq!(p(&["-h"]).unwrap_err(), FlagError::Help);
        assert_eq!(p(&["--help"]).unwrap_err(), FlagError::Help);
    }

    proptest! {
        #[test]
        fn value_round_trips(v in "[^\\x00]{0,20}", eq in any::<bool>()) {
            let args: Vec<String> = if eq {
                vec![format!("-o={v}"), "rest".into()]
            } else {
                vec!["-o".into(), v.clone(), "rest".into()]
            };
            let r = set().parse(&args).unwrap();
            prop_assert_eq!(r.get("o"), Some(v.as_str()));
            prop_assert_eq!(r.args, vec!["rest".to_string()]);
        }

        #[test]
        fn never_panics(args in prop::collection::vec("[-=a-z0-9]{0,6}", 0..6)) {
            let _ = set().parse(&args);
        }
    }
}

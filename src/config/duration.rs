//! Go `time.ParseDuration` / `Duration.String` compatible durations, and Litestream's byte
//! sizes (`part-size: 5MiB`), with serde wrappers that report bad values precisely.
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use thiserror::Error;

/// Largest duration Go can represent: `1<<63 - 1` nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;
const LIMIT: u64 = 1 << 63;

const HINT: &str =
    "use a number with a unit: ns, us, ms, s, m or h (e.g. \"1s\", \"500ms\", \"1h30m\")";

/// Why a Go duration was refused; each message names the text and says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("invalid duration {input:?}: {HINT}")]
    Syntax { input: String },
    #[error("invalid duration {input:?}: missing unit; {HINT}")]
    MissingUnit { input: String },
    #[error("invalid duration {input:?}: unknown unit {unit:?}; {HINT}")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {input:?}: too large")]
    TooLarge { input: String },
    #[error("invalid duration {input:?}: must not be negative")]
    Negative { input: String },
}

/// Why a byte size was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ByteSizeError {
    #[error("invalid size {input:?}: {SIZE_HINT}")]
    Syntax { input: String },
    #[error("invalid size {input:?}: unknown unit {unit:?}; {SIZE_HINT}")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid size {input:?}: too large")]
    TooLarge { input: String },
    #[error("invalid size {input:?}: must be at least 1 byte")]
    TooSmall { input: String },
}

const SIZE_HINT: &str =
    "use a number of bytes with an optional unit, e.g. 5242880, \"5MiB\" or \"10MB\"";

/// Parses a duration the way Go's `time.ParseDuration` does (`1s`, `500ms`, `1h30m`, `1.5s`,
/// `0`, `us`/`µs`/`ns`), except that negative durations are refused. A bare number other
/// than `0` is an error, as in Go. The error text says what is wrong and how to write it.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let input_s = || input.to_string();
    let invalid = || DurationError::Syntax { input: input_s() };
    let too_large = || DurationError::TooLarge { input: input_s() };
    let mut s = input;
    let mut neg = false;
    if let Some(c) = s.as_bytes().first() {
        if *c == b'-' || *c == b'+' {
            neg = *c == b'-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let (int, rest, had_int) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let (mut frac, mut scale, mut had_frac) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, rest2) = leading_fraction(rest);
            had_frac = rest2.len() != rest.len();
            (frac, scale, s) = (f, sc, rest2);
        }
        if !had_int && !had_frac {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit { input: input_s() });
        }
        let (unit_name, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit_name).ok_or_else(|| DurationError::UnknownUnit {
            input: input_s(),
            unit: unit_name.to_string(),
        })?;
        if int > LIMIT / unit {
            return Err(too_large());
        }
        let mut v = int * unit;
        if frac > 0 {
            // Go computes the fractional part in float64 too; mirror it exactly.
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(too_large());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(too_large());
        }
    }
    if neg {
        if total == 0 {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative { input: input_s() });
    }
    if total > MAX_NANOS {
        return Err(too_large());
    }
    Ok(Duration::from_nanos(total))
}

/// `[0-9]*` as a number; `None` on overflow. The flag tells whether any digit was read.
fn leading_int(s: &str) -> Option<(u64, &str, bool)> {
    let mut x: u64 = 0;
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    for c in s[..n].bytes() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[n..], n > 0))
}

/// `[0-9]*` after the decimal point, as (digits, 10^used digits); extra digits are dropped.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    for c in s[..n].bytes() {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[n..])
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Formats like Go's `Duration.String`: `1h30m0s`, `1.5s`, `500ms`, `1µs`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let u = d.as_nanos();
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..=999 => (0, "ns"),
            1_000..=999_999 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let (int, frac) = split_frac(u, prec);
        return format!("{int}{frac}{unit}");
    }
    let (secs, frac) = split_frac(u, 9);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}{frac}s")
    } else if m > 0 {
        format!("{m}m{s}{frac}s")
    } else {
        format!("{s}{frac}s")
    }
}

/// Splits `v` into `v / 10^prec` and the fraction as `.ddd` without trailing zeros.
fn split_frac(v: u128, prec: u32) -> (u128, String) {
    let div = 10u128.pow(prec);
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}

/// Parses a byte size like go-humanize's `ParseBytes`: `5242880`, `5MB` (10^6), `5MiB`
/// (2^20), `1.5 GiB`, case-insensitive. Zero is refused.
pub fn parse_byte_size(input: &str) -> Result<u64, ByteSizeError> {
    let s = input.trim();
    let n = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let input_s = || input.to_string();
    let num: f64 = s[..n]
        .replace(',', "")
        .parse()
        .map_err(|_| ByteSizeError::Syntax { input: input_s() })?;
    let mult: u64 = match s[n..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        other => {
            return Err(ByteSizeError::UnknownUnit {
                input: input_s(),
                unit: other.to_string(),
            })
        }
    };
    let bytes = num * mult as f64;
    if bytes >= i64::MAX as f64 {
        return Err(ByteSizeError::TooLarge { input: input_s() });
    }
    if bytes < 1.0 {
        return Err(ByteSizeError::TooSmall { input: input_s() });
    }
    Ok(bytes as u64)
}

/// A duration field in YAML (Go syntax; `0` may be written as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = GoDuration;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"1s\", \"500ms\" or \"1h30m\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        parse_go_duration(v).map(GoDuration).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
        if v == 0 {
            return Ok(GoDuration(Duration::ZERO));
        }
        Err(E::custom(format!(
            "invalid duration {v}: a unit is required (e.g. \"{v}s\" or \"{v}ms\")"
        )))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: must not be negative"
            ))),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: a unit is required (e.g. \"{v}s\")"
        )))
    }
}

/// A byte-size field in YAML: an integer or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as 5242880 or \"5MiB\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_byte_size(v).map(ByteSize).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn parse_table() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("1s", S),
            ("500ms", 500 * MS),
            ("1h30m", 5400 * S),
            ("1.5s", 1500 * MS),
            (".5s", 500 * MS),
            ("5.s", 5 * S),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("7ns", 7),
            ("1m0.000000001s", 60 * S + 1),
            ("2h45m30.5s", 9930 * S + 500 * MS),
            ("9223372036854775807ns", MAX_NANOS),
            ("2562047h47m16.854775807s", MAX_NANOS),
        ];
        for (input, nanos) in ok {
            assert_eq!(
                parse_go_duration(input),
                Ok(Duration::from_nanos(*nanos)),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("", "invalid duration"),
            ("1", "missing unit"),
            ("30", "missing unit"),
            ("1x", "unknown unit \"x\""),
            ("1S", "unknown unit"),
            (".", "invalid duration"),
            ("s", "invalid duration"),
            ("1 s", "unknown unit \" s\""),
            ("-1s", "must not be negative"),
            ("9223372036854775808ns", "too large"),
            ("3000000h", "too large"),
            ("1s-", "invalid duration"),
        ];
        for (input, want) in bad {
            let err = parse_go_duration(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn format_table() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (S, "1s"),
            (1500 * MS, "1.5s"),
            (60 * S, "1m0s"),
            (5400 * S, "1h30m0s"),
            (3600 * S + 1, "1h0m0.000000001s"),
            (MAX_NANOS, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_go_duration(Duration::from_nanos(*nanos)), *want);
        }
    }

    #[test]
    fn byte_sizes() {
        let ok: &[(&str, u64)] = &[
            ("5242880", 5_242_880),
            ("5MiB", 5 << 20),
            ("5mib", 5 << 20),
            ("10MB", 10_000_000),
            ("1.5 GiB", 3 << 29),
            ("1k", 1000),
            ("64 B", 64),
            ("1,000", 1000),
        ];
        for (input, want) in ok {
            assert_eq!(parse_byte_size(input), Ok(*want), "{input}");
        }
        for bad in ["", "MB", "5 XB", "0", "-5", "0.5"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_values() {
        let d: GoDuration = serde_yaml_ng::from_str("0").unwrap();
        assert_eq!(d.0, Duration::ZERO);
        let d: GoDuration = serde_yaml_ng::from_str("\"250ms\"").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        for bad in ["5", "1.5", "-3", "1x", "[1]"] {
            assert!(serde_yaml_ng::from_str::<GoDuration>(bad).is_err(), "{bad}");
        }
        let b: ByteSize = serde_yaml_ng::from_str("5MiB").unwrap();
        assert_eq!(b.0, 5 << 20);
        let b: ByteSize = serde_yaml_ng::from_str("1024").unwrap();
        assert_eq!(b.0, 1024);
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(nanos in 0..=MAX_NANOS) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }

        #[test]
        fn composed_units_sum(h in 0u64..10_000, m in 0u64..1_000, s in 0u64..1_000, ms in 0u64..1_000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            prop_assert_eq!(parse_go_duration(&text), Ok(want));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = parse_go_duration(&s);
        }
    }
}

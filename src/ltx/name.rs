//! LTX file names: `<min>-<max>.ltx`, 16 lowercase hex digits each.
use crate::TxId;

/// `0000000000000001-000000000000000a.ltx`.
pub fn format_file_name(min: TxId, max: TxId) -> String {
    format!("{min:016x}-{max:016x}.ltx")
}

/// Parses exactly `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$` into `(min, max)`. Anything else, including
/// uppercase hex and temp names such as `….ltx.tmp`, is `None` (Litestream ignores such objects).
pub fn parse_file_name(name: &str) -> Option<(TxId, TxId)> {
    let b = name.as_bytes();
    if b.len() != 16 + 1 + 16 + 4 || b[16] != b'-' || &b[33..] != b".ltx" {
        return None;
    }
    Some((parse_lower_hex(&b[..16])?, parse_lower_hex(&b[17..33])?))
}

fn parse_lower_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &c| {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_canonical_names() {
        assert_eq!(
            parse_file_name("0000000000000001-000000000000000a.ltx"),
            Some((1, 10))
        );
        assert_eq!(
            parse_file_name("ffffffffffffffff-ffffffffffffffff.ltx"),
            Some((u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "0000000000000001-000000000000000A.ltx",
            "0000000000000001-000000000000000a.LTX",
            "0000000000000001-000000000000000a.ltx.tmp",
            "000000000000001-000000000000000a.ltx",
            "00000000000000001-000000000000000a.ltx",
            "0000000000000001_000000000000000a.ltx",
            "0000000000000001-000000000000000g.ltx",
            "+000000000000001-000000000000000a.ltx",
            "0000000000000001-000000000000000a",
            "",
            "é000000000000001-000000000000000a.ltx",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(min: u64, max: u64) {
            prop_assert_eq!(parse_file_name(&format_file_name(min, max)), Some((min, max)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_file_name(&s);
        }
    }
}

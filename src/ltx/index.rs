//! The page index (spec §3.3): `uvarint(pgno) uvarint(offset) uvarint(size)` per page in ascending
//! pgno, `uvarint(0)`, then a big-endian u64 counting the entry and terminator bytes.
//! Varints are unsigned LEB128, as Go's `encoding/binary` writes them.
#[cfg(test)]
use super::LtxError;

/// Where one page frame sits in an LTX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageIndexEntry {
    pub pgno: u32,
    /// Absolute byte offset of the frame's page header.
    pub offset: u64,
    /// Whole frame length: page header, length field (if any) and compressed data.
    pub size: u64,
}

/// Longest uvarint of a u64.
pub const MAX_UVARINT_LEN: usize = 10;

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Incremental uvarint parser: feed bytes until it yields a value. Rejects encodings longer than
/// 10 bytes or overflowing 64 bits (Go's `binary.ReadUvarint` rules).
#[derive(Debug, Default)]
pub struct UvarintParser {
    value: u64,
    shift: u32,
    len: usize,
}

impl UvarintParser {
    /// `Ok(Some(v))` when `b` was the last byte, `Ok(None)` when more bytes follow.
    pub fn push(&mut self, b: u8) -> Result<Option<u64>, &'static str> {
        self.len += 1;
        if self.len == MAX_UVARINT_LEN && b > 1 {
            return Err("varint overflows 64 bits");
        }
        if self.len > MAX_UVARINT_LEN {
            return Err("varint longer than 10 bytes");
        }
        self.value |= u64::from(b & 0x7f) << self.shift;
        self.shift += 7;
        if b < 0x80 {
            let v = self.value;
            *self = UvarintParser::default();
            return Ok(Some(v));
        }
        Ok(None)
    }
}

/// The complete index block: entries, terminator and u64 length (the encoder builds the same
/// bytes incrementally).
#[cfg(test)]
pub fn encode_index(entries: &[PageIndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 8 + 9);
    for e in entries {
        put_uvarint(&mut out, u64::from(e.pgno));
        put_uvarint(&mut out, e.offset);
        put_uvarint(&mut out, e.size);
    }
    put_uvarint(&mut out, 0);
    let len = out.len() as u64;
    out.extend_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
/// Parses the index from the end of an LTX file: `tail` must end with the 16-byte trailer and hold
/// the whole index before it (e.g. the last 32 KiB of a small file, or the whole file). Lets a
/// reader fetch single pages by byte range without decoding the file. Does not verify checksums.
pub fn decode_index_from_tail(tail: &[u8]) -> Result<Vec<PageIndexEntry>, LtxError> {
    const TRAILER: usize = super::TRAILER_SIZE;
    if tail.len() < TRAILER + 8 + 1 {
        return Err(LtxError::Truncated(format!(
            "{} bytes cannot hold an index length and trailer",
            tail.len()
        )));
    }
    let len_at = tail.len() - TRAILER - 8;
    let mut lb = [0u8; 8];
    lb.copy_from_slice(&tail[len_at..len_at + 8]);
    let len = u64::from_be_bytes(lb);
    let start = match usize::try_from(len).ok().and_then(|l| len_at.checked_sub(l)) {
        Some(s) if len > 0 => s,
        _ => {
            return Err(LtxError::BadIndex(format!(
                "index length {len} does not fit in the {len_at} bytes before it; fetch more of the file"
            )))
        }
    };
    let body = &tail[start..len_at];
    let mut entries = Vec::new();
    let mut p = UvarintParser::default();
    let mut fields = [0u64; 3];
    let mut nfield = 0;
    for (i, &b) in body.iter().enumerate() {
        let v = match p.push(b) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => return Err(LtxError::BadIndex(format!("{e} at index byte {i}"))),
        };
        if nfield == 0 && v == 0 {
            if i + 1 != body.len() {
                return Err(LtxError::BadIndex(format!(
                    "terminator at index byte {i} but the length says {len}"
                )));
            }
            return Ok(entries);
        }
        fields[nfield] = v;
        nfield += 1;
        if nfield == 3 {
            nfield = 0;
            let pgno = u32::try_from(fields[0]).map_err(|_| {
                LtxError::BadIndex(format!("page number {} out of range", fields[0]))
            })?;
            entries.push(PageIndexEntry {
                pgno,
                offset: fields[1],
                size: fields[2],
            });
        }
    }
    Err(LtxError::BadIndex("index has no terminator".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example() {
        // Spec §3.9: page 2 at offset 100, size 76, then terminator and length 4.
        let e = [PageIndexEntry {
            pgno: 2,
            offset: 100,
            size: 76,
        }];
        assert_eq!(encode_index(&e), [2, 100, 76, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
    }

    #[test]
    fn uvarint_limits() {
        let mut out = Vec::new();
        put_uvarint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        let mut p = UvarintParser::default();
        let got: Vec<_> = out.iter().map(|&b| p.push(b).unwrap()).collect();
        assert_eq!(got.last(), Some(&Some(u64::MAX)));
        let mut p = UvarintParser::default();
        for _ in 0..9 {
            assert_eq!(p.push(0xff), Ok(None));
        }
        assert!(p.push(0x02).is_err());
    }

    proptest! {
        #[test]
        fn uvarint_round_trip(v: u64) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            let mut p = UvarintParser::default();
            let (last, init) = out.split_last().unwrap();
            for &b in init {
                prop_assert_eq!(p.push(b), Ok(None));
            }
            prop_assert_eq!(p.push(*last), Ok(Some(v)));
        }

        #[test]
        fn index_round_trip(raw in proptest::collection::vec((1u32.., any::<u64>(), any::<u64>()), 0..50),
                            prefix in proptest::collection::vec(any::<u8>(), 0..20)) {
            let entries: Vec<_> = raw.iter().map(|&(pgno, offset, size)| PageIndexEntry { pgno, offset, size }).collect();
            let mut tail = prefix;
            tail.extend_from_slice(&encode_index(&entries));
            tail.extend_from_slice(&[0xaa; 16]);
            prop_assert_eq!(decode_index_from_tail(&tail).unwrap(), entries);
        }

        #[test]
        fn index_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_index_from_tail(&tail);
        }
    }
}

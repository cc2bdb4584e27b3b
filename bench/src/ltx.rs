//! Just enough LTX v3 reading to find which commit an L0 file reaches.
//!
//! Each benchmark commit rewrites one row of the table `marker` with the blob
//! `MARKER_MAGIC ‖ k (u64 big-endian)`, where k counts commits from 1. SQLite stores a blob
//! contiguously inside its cell, so the newest version of that page in an L0 file holds the
//! highest k that file covers. Older values can survive in the page's free space, but they
//! are all smaller, so the maximum over all matches is the answer.

/// Prefix of the marker blob (16 bytes with the counter).
pub const MARKER_MAGIC: &[u8; 8] = b"LSBENCH!";

/// The marker blob for commit `k`.
pub fn marker(k: u64) -> Vec<u8> {
    let mut v = MARKER_MAGIC.to_vec();
    v.extend_from_slice(&k.to_be_bytes());
    v
}

const HEADER_SIZE: usize = 100;
const PAGE_HEADER_SIZE: usize = 6;
/// Page flag: a u32 compressed length and a raw LZ4 block follow (every 0.5.16+ file).
const FLAG_SIZE_FOLLOWS: u16 = 1;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The highest marker counter in the pages of an LTX file, `None` if it holds no marker or
/// cannot be read (legacy LZ4-frame pages are not decoded: neither contender writes them).
pub fn max_marker(file: &[u8]) -> Option<u64> {
    if file.get(0..4)? != b"LTX1" {
        return None;
    }
    let page_size = be32(file, 8)? as usize;
    let mut at = HEADER_SIZE;
    let mut best: Option<u64> = None;
    loop {
        let pgno = be32(file, at)?;
        let flags = u16::from_be_bytes(file.get(at + 4..at + 6)?.try_into().ok()?);
        if pgno == 0 {
            return best;
        }
        if flags & FLAG_SIZE_FOLLOWS == 0 {
            return best;
        }
        let len = be32(file, at + PAGE_HEADER_SIZE)? as usize;
        let start = at + PAGE_HEADER_SIZE + 4;
        let block = file.get(start..start + len)?;
        let page = lz4_flex::block::decompress(block, page_size).ok()?;
        if let Some(k) = scan(&page) {
            best = Some(best.map_or(k, |b| b.max(k)));
        }
        at = start + len;
    }
}

fn scan(page: &[u8]) -> Option<u64> {
    let mut best = None;
    let mut i = 0;
    while i + 16 <= page.len() {
        if &page[i..i + 8] == MARKER_MAGIC {
            let k = u64::from_be_bytes(page[i + 8..i + 16].try_into().ok()?);
            best = Some(best.map_or(k, |b: u64| b.max(k)));
            i += 16;
        } else {
            i += 1;
        }
    }
    best
}

/// Decodes an `aws-chunked` request body (`<hex size>[;ext]\r\n<data>\r\n` … `0\r\n`
/// trailers `\r\n`), as AWS SDKs send streaming uploads. Returns `None` if malformed.
pub fn decode_aws_chunked(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[..eol]).ok()?;
        let hex = line.split(';').next()?.trim();
        let n = usize::from_str_radix(hex, 16).ok()?;
        b = &b[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pgno: u32, page: &[u8]) -> Vec<u8> {
        let block = lz4_flex::block::compress(page);
        let mut f = pgno.to_be_bytes().to_vec();
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&(block.len() as u32).to_be_bytes());
        f.extend_from_slice(&block);
        f
    }

    #[test]
    fn finds_the_highest_marker_across_pages() {
        let mut file = b"LTX1".to_vec();
        file.extend_from_slice(&2u32.to_be_bytes());
        file.extend_from_slice(&512u32.to_be_bytes());
        file.resize(HEADER_SIZE, 0);
        let mut p1 = vec![0u8; 512];
        p1[40..56].copy_from_slice(&marker(7));
        p1[300..316].copy_from_slice(&marker(9));
        let mut p2 = vec![0u8; 512];
        p2[3..19].copy_from_slice(&marker(8));
        file.extend(frame(1, &p1));
        file.extend(frame(2, &p2));
        file.extend_from_slice(&[0u8; 6]);
        assert_eq!(max_marker(&file), Some(9));
        assert_eq!(max_marker(&file[..HEADER_SIZE + 3]), None);
    }

    #[test]
    fn aws_chunked_bodies_decode() {
        let body =
            b"5;chunk-signature=ab\r\nhello\r\n3\r\n!!!\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(decode_aws_chunked(body).unwrap(), b"hello!!!");
        assert!(decode_aws_chunked(b"zz\r\n").is_none());
    }
}

//! One standard LZ4 frame, the page encoding of ltx <= v0.5.1 (Litestream 0.5.0–0.5.15; spec §3.2).
//!
//! Frame layout (all little-endian): magic `04 22 4D 18`; descriptor FLG, BD, optional 8-byte
//! content size, optional 4-byte dictionary id, 1-byte header checksum; data blocks, each a u32
//! size (high bit = stored uncompressed) followed by the data and, if FLG says so, a 4-byte block
//! checksum; a zero u32 EndMark; an optional 4-byte content checksum. Checksums are xxHash32.
//!
//! [`decode_frame`] reads exactly the frame's bytes and nothing after them, so the caller's reader
//! is left on the next LTX page header.
use std::io::{self, Read};

const FRAME_MAGIC: u32 = 0x184D_2204;
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENT: u8 = 1 << 5;
const FLG_BLOCK_CHECKSUM: u8 = 1 << 4;
const FLG_CONTENT_SIZE: u8 = 1 << 3;
const FLG_CONTENT_CHECKSUM: u8 = 1 << 2;
const FLG_RESERVED: u8 = 1 << 1;
const FLG_DICT_ID: u8 = 1;
const BLOCK_UNCOMPRESSED: u32 = 1 << 31;
/// Linked blocks may refer back at most this far.
const WINDOW: usize = 64 * 1024;

/// Why a frame could not be decoded. `at` counts bytes from the frame's first byte.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Reader error, including `UnexpectedEof` when the frame is cut short.
    Io(io::Error),
    Invalid {
        at: u64,
        reason: String,
    },
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

struct Counted<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
}

impl<R: Read> Counted<'_, R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn u32_le(&mut self) -> Result<u32, FrameError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn invalid<T>(&self, at: u64, reason: impl Into<String>) -> Result<T, FrameError> {
        Err(FrameError::Invalid {
            at,
            reason: reason.into(),
        })
    }
}

/// Decodes one LZ4 frame from `r` whose content must be exactly `out.len()` bytes, into `out`.
/// `scratch` is reused for compressed blocks. Returns the number of bytes consumed.
pub(crate) fn decode_frame<R: Read>(
    r: &mut R,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<u64, FrameError> {
    let mut c = Counted { r, pos: 0 };
    let magic = c.u32_le()?;
    if magic != FRAME_MAGIC {
        return c.invalid(
            0,
            format!("LZ4 frame magic is {magic:#010x}, want {FRAME_MAGIC:#010x}"),
        );
    }

    let mut desc = [0u8; 2 + 8 + 4];
    c.read_exact(&mut desc[..2])?;
    let (flg, bd) = (desc[0], desc[1]);
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 || flg & FLG_RESERVED != 0 {
        return c.invalid(4, format!("unsupported LZ4 frame FLG byte {flg:#04x}"));
    }
    if flg & FLG_DICT_ID != 0 {
        return c.invalid(4, "LZ4 frame needs a dictionary, which LTX never uses");
    }
    if bd & 0b1000_1111 != 0 {
        return c.invalid(5, format!("invalid LZ4 frame BD byte {bd:#04x}"));
    }
    let block_max: usize = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        code => return c.invalid(5, format!("invalid LZ4 block size code {code}")),
    };
    let mut desc_len = 2;
    if flg & FLG_CONTENT_SIZE != 0 {
        c.read_exact(&mut desc[2..10])?;
        desc_len = 10;
        let mut n = [0u8; 8];
        n.copy_from_slice(&desc[2..10]);
        let size = u64::from_le_bytes(n);
        if size != out.len() as u64 {
            return c.invalid(
                6,
                format!(
                    "LZ4 content size is {size}, want the page size {}",
                    out.len()
                ),
            );
        }
    }
    let hc_at = c.pos;
    let hc = c.u8()?;
    let want_hc = (xxh32(&desc[..desc_len], 0) >> 8) as u8;
    if hc != want_hc {
        return c.invalid(
            hc_at,
            format!("LZ4 header checksum {hc:#04x}, want {want_hc:#04x}"),
        );
    }

    let independent = flg & FLG_BLOCK_INDEPENDENT != 0;
    let mut filled = 0usize;
    loop {
        let at = c.pos;
        let word = c.u32_le()?;
        if word == 0 {
            break; // EndMark
        }
        let size = (word & !BLOCK_UNCOMPRESSED) as usize;
        if size > block_max {
            return c.invalid(
                at,
                format!("LZ4 block of {size} bytes exceeds the frame's maximum {block_max}"),
            );
        }
        let data_at = c.pos;
        let produced = if word & BLOCK_UNCOMPRESSED != 0 {
            let room = out.len() - filled;
            if size > room {
                return c.invalid(
                    at,
                    format!(
                        "LZ4 stored block of {size} bytes overflows the page ({room} bytes left)"
                    ),
                );
            }
            c.read_exact(&mut out[filled..filled + size])?;
            if flg & FLG_BLOCK_CHECKSUM != 0 {
                check_block(&mut c, &out[filled..filled + size])?;
            }
            size
        } else {
            scratch.clear();
            scratch.resize(size, 0);
            c.read_exact(scratch)?;
            if flg & FLG_BLOCK_CHECKSUM != 0 {
                check_block(&mut c, scratch)?;
            }
            let (done, rest) = out.split_at_mut(filled);
            let result = if independent {
                lz4_flex::block::decompress_into(scratch, rest)
            } else {
                let dict = &done[done.len().saturating_sub(WINDOW)..];
                lz4_flex::block::decompress_into_with_dict(scratch, rest, dict)
            };
            match result {
                Ok(n) => n,
                Err(e) => return c.invalid(data_at, format!("corrupt LZ4 block: {e}")),
            }
        };
        filled += produced;
    }
    if filled != out.len() {
        return c.invalid(
            c.pos,
            format!(
                "LZ4 frame holds {filled} bytes, want the page size {}",
                out.len()
            ),
        );
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let at = c.pos;
        let stored = c.u32_le()?;
        let computed = xxh32(out, 0);
        if stored != computed {
            return c.invalid(
                at,
                format!("LZ4 content checksum {stored:08x}, computed {computed:08x}"),
            );
        }
    }
    Ok(c.pos)
}

fn check_block<R: Read>(c: &mut Counted<'_, R>, data: &[u8]) -> Result<(), FrameError> {
    let at = c.pos;
    let stored = c.u32_le()?;
    let computed = xxh32(data, 0);
    if stored != computed {
        return c.invalid(
            at,
            format!("LZ4 block checksum {stored:08x}, computed {computed:08x}"),
        );
    }
    Ok(())
}

const P1: u32 = 0x9E37_79B1;
const P2: u32 = 0x85EB_CA77;
const P3: u32 = 0xC2B2_AE3D;
const P4: u32 = 0x27D4_EB2F;
const P5: u32 = 0x1656_67B1;

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn xxh32_round(acc: u32, input: u32) -> u32 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(13)
        .wrapping_mul(P1)
}

/// xxHash32 (the checksum of the LZ4 frame format).
pub(crate) fn xxh32(data: &[u8], seed: u32) -> u32 {
    let mut chunks = data.chunks_exact(16);
    let mut h = if data.len() >= 16 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        for chunk in &mut chunks {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = xxh32_round(*lane, le32(&chunk[i * 4..]));
            }
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u32);
    let tail = chunks.remainder();
    let mut words = tail.chunks_exact(4);
    for w in &mut words {
        h = h.wrapping_add(le32(w).wrapping_mul(P3));
        h = h.rotate_left(17).wrapping_mul(P4);
    }
    for &b in words.remainder() {
        h = h.wrapping_add(u32::from(b).wrapping_mul(P5));
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

/// A minimal LZ4 frame writer for tests (legacy LTX pages, corruption cases).
#[cfg(test)]
pub(crate) mod test_encoder {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct FrameOptions {
        /// Block max size code 4..=7 (64 KiB … 4 MiB).
        pub block_code: u8,
        /// Split the content into blocks of this many bytes.
        pub block_len: usize,
        pub independent: bool,
        pub block_checksum: bool,
        pub content_size: bool,
        pub content_checksum: bool,
        /// Store blocks uncompressed instead of compressing them.
        pub stored: bool,
    }

    impl Default for FrameOptions {
        /// What pierrec/lz4 (used by ltx v0.5.1) writes: FLG 0x64, BD 0x40.
        fn default() -> Self {
            FrameOptions {
                block_code: 4,
                block_len: 64 << 10,
                independent: true,
                block_checksum: false,
                content_size: false,
                content_checksum: true,
                stored: false,
            }
        }
    }

    pub(crate) fn encode_frame(data: &[u8], o: FrameOptions) -> Vec<u8> {
        let mut out = FRAME_MAGIC.to_le_bytes().to_vec();
        let mut flg = FLG_VERSION_01;
        if o.independent {
            flg |= FLG_BLOCK_INDEPENDENT;
        }
        if o.block_checksum {
            flg |= FLG_BLOCK_CHECKSUM;
        }
        if o.content_size {
            flg |= FLG_CONTENT_SIZE;
        }
        if o.content_checksum {
            flg |= FLG_CONTENT_CHECKSUM;
        }
        let mut desc = vec![flg, o.block_code << 4];
        if o.content_size {
            desc.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(&desc);
        out.push((xxh32(&desc, 0) >> 8) as u8);
        let mut start = 0;
        while start < data.len() {
            let end = (start + o.block_len.max(1)).min(data.len());
            let chunk = &data[start..end];
            let (word, body) = if o.stored {
                (chunk.len() as u32 | BLOCK_UNCOMPRESSED, chunk.to_vec())
            } else if o.independent {
                let b = lz4_flex::block::compress(chunk);
                (b.len() as u32, b)
            } else {
                let dict = &data[start.saturating_sub(WINDOW)..start];
                let b = lz4_flex::block::compress_with_dict(chunk, dict);
                (b.len() as u32, b)
            };
            out.extend_from_slice(&word.to_le_bytes());
            out.extend_from_slice(&body);
            if o.block_checksum {
                out.extend_from_slice(&xxh32(&body, 0).to_le_bytes());
            }
            start = end;
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        if o.content_checksum {
            out.extend_from_slice(&xxh32(data, 0).to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_encoder::{encode_frame, FrameOptions};
    use super::*;
    use proptest::prelude::*;

    fn decode(frame: &[u8], len: usize) -> Result<(Vec<u8>, u64), FrameError> {
        let mut out = vec![0u8; len];
        let mut r = frame;
        let n = decode_frame(&mut r, &mut out, &mut Vec::new())?;
        Ok((out, n))
    }

    fn page(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len)
            .map(|i| {
                if i % 7 < 3 {
                    rng.u8(..4)
                } else {
                    (i / 64) as u8
                }
            })
            .collect()
    }

    #[test]
    fn xxh32_known_values() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(
            xxh32(b"Nobody inspects the spammish repetition", 0),
            0xE229_3B2F
        );
    }

    /// Frames written by the reference `lz4` command-line tool (see the fixtures README).
    #[test]
    fn decodes_reference_tool_frames() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ltx/lz4cli");
        let mut input: Vec<u8> = (0..10000)
            .flat_map(|i| format!("line {} value {}\n", i % 100, (i % 100) * 7 % 97).into_bytes())
            .collect();
        input.truncate(70000);
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".lz4"))
            .collect();
        names.sort();
        assert!(names.len() >= 4, "fixtures missing: {names:?}");
        for name in names {
            let frame = std::fs::read(format!("{dir}/{name}")).unwrap();
            let mut with_tail = frame.clone();
            with_tail.extend_from_slice(b"NEXT");
            let (out, n) =
                decode(&with_tail, input.len()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(
                n,
                frame.len() as u64,
                "{name}: must stop at the frame's end"
            );
            assert!(out == input, "{name}: content differs");
        }
    }

    #[test]
    fn stops_exactly_at_frame_end() {
        let data = page(4096, 1);
        let mut bytes = encode_frame(&data, FrameOptions::default());
        let len = bytes.len();
        bytes.extend_from_slice(&[9, 9, 9]);
        let mut r: &[u8] = &bytes;
        let mut out = vec![0u8; 4096];
        let n = decode_frame(&mut r, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(n as usize, len);
        assert_eq!(r, &[9, 9, 9]);
        assert_eq!(out, data);
    }

    #[test]
    fn linked_blocks_use_earlier_output() {
        let data = page(65536, 2);
        let o = FrameOptions {
            independent: false,
            block_len: 5000,
            block_checksum: true,
            ..Default::default()
        };
        let frame = encode_frame(&data, o);
        assert_eq!(decode(&frame, data.len()).unwrap().0, data);
    }

    #[test]
    fn rejects_wrong_length_and_bad_checksums() {
        let data = page(1024, 3);
        let frame = encode_frame(
            &data,
            FrameOptions {
                content_size: true,
                ..Default::default()
            },
        );
        assert!(matches!(
            decode(&frame, 2048),
            Err(FrameError::Invalid { .. })
        ));
        let frame = encode_frame(&data, FrameOptions::default());
        assert!(matches!(
            decode(&frame, 2048),
            Err(FrameError::Invalid { .. })
        ));
        assert!(matches!(
            decode(&frame, 512),
            Err(FrameError::Invalid { .. })
        ));
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode(&bad, 1024),
            Err(FrameError::Invalid { .. })
        ));
        let mut bad = frame.clone();
        bad[6] ^= 1; // header checksum
        assert!(matches!(
            decode(&bad, 1024),
            Err(FrameError::Invalid { at: 6, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(len in 1usize..20000, seed: u64, block_len in 1usize..70000,
                      independent: bool, block_checksum: bool, content_size: bool,
                      content_checksum: bool, stored: bool) {
            let data = page(len, seed);
            let o = FrameOptions { block_code: 4, block_len: block_len.min(65536), independent,
                block_checksum, content_size, content_checksum, stored };
            let frame = encode_frame(&data, o);
            let (out, n) = decode(&frame, len).unwrap();
            prop_assert_eq!(n as usize, frame.len());
            prop_assert!(out == data);
        }

        #[test]
        fn corruption_never_panics(seed: u64, pos in 0usize..10000, bit in 0u8..8, cut in 0usize..10000) {
            let data = page(2048, seed);
            let frame = encode_frame(&data, FrameOptions::default());
            let mut bad = frame.clone();
            let pos = pos % bad.len();
            bad[pos] ^= 1 << bit;
            let _ = decode(&bad, 2048); // any outcome but a panic
            let cut = cut % frame.len();
            prop_assert!(decode(&frame[..cut], 2048).is_err());
        }
    }
}

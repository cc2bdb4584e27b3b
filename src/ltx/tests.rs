//! Codec-level tests: encoder→decoder round trips, corruption, legacy pages, real files.
use super::index::encode_index;
use super::lz4frame::test_encoder::{encode_frame, FrameOptions};
use super::*;
use proptest::prelude::*;

pub(super) fn header(page_size: u32, commit: u32, min: u64, max: u64) -> Header {
    Header {
        flags: FLAG_NO_CHECKSUM,
        page_size,
        commit,
        min_txid: min,
        max_txid: max,
        timestamp_ms: 1_700_000_000_123,
        wal_offset: 32,
        wal_size: 4120,
        wal_salt1: 0x1234,
        wal_salt2: 0x5678,
        ..Header::default()
    }
}

/// Deterministic page content: `kind` 0 = random (incompressible), 1 = text-like, 2 = zeros.
pub(super) fn page_data(page_size: u32, seed: u64, kind: u8) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = page_size as usize;
    match kind {
        0 => (0..n).map(|_| rng.u8(..)).collect(),
        1 => (0..n)
            .map(|i| {
                if rng.u8(..8) == 0 {
                    rng.u8(..)
                } else {
                    b"abcdefgh"[i % 8]
                }
            })
            .collect(),
        _ => vec![0; n],
    }
}

fn encode(h: &Header, pages: &[(u32, Vec<u8>)]) -> (Vec<u8>, Trailer) {
    let mut e = Encoder::new(Vec::new(), h).unwrap();
    for (pgno, data) in pages {
        e.write_page(*pgno, data).unwrap();
        // The encoder streams: each frame reaches the writer before write_page returns.
        assert_eq!(e.get_ref().len() as u64, e.bytes_written());
    }
    e.finish().unwrap()
}

type Decoded = (Header, Vec<(u32, Vec<u8>)>, Trailer, Vec<PageIndexEntry>);

pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, LtxError> {
    let mut d = Decoder::new(bytes)?;
    let h = *d.header();
    let mut pages = Vec::new();
    let mut buf = vec![0u8; h.page_size as usize];
    while let Some(pgno) = d.next_page(&mut buf)? {
        pages.push((pgno, buf.clone()));
    }
    let (t, idx) = d.finish()?;
    Ok((h, pages, t, idx))
}

/// Builds files the encoder refuses to write (legacy pages, broken rules) with a correct file
/// checksum, following spec §3.5 independently of the encoder.
pub(super) struct Raw {
    pub header: Header,
    /// (pgno, page flags, page data); flags 0 = legacy LZ4 frame, 1 = length + block.
    pub frames: Vec<(u32, u16, Vec<u8>)>,
    pub index: Option<Vec<u8>>,
    pub post_apply: u64,
}

impl Raw {
    pub fn new(header: Header) -> Self {
        Raw {
            header,
            frames: Vec::new(),
            index: None,
            post_apply: 0,
        }
    }

    pub fn page(mut self, pgno: u32, flags: u16, data: Vec<u8>) -> Self {
        self.frames.push((pgno, flags, data));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = self.header.encode().to_vec();
        let mut h = Crc64::new();
        h.update(&out);
        let mut entries = Vec::new();
        for (pgno, flags, data) in &self.frames {
            let off = out.len();
            let mut ph = pgno.to_be_bytes().to_vec();
            ph.extend_from_slice(&flags.to_be_bytes());
            if flags & 1 != 0 {
                let block = lz4_flex::block::compress(data);
                ph.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&ph);
                out.extend_from_slice(&block);
            } else {
                out.extend_from_slice(&ph);
                out.extend_from_slice(&encode_frame(data, FrameOptions::default()));
            }
            h.update(&ph);
            h.update(data);
            entries.push(PageIndexEntry {
                pgno: *pgno,
                offset: off as u64,
                size: (out.len() - off) as u64,
            });
        }
        let mut tail = vec![0u8; 6];
        tail.extend_from_slice(&self.index.clone().unwrap_or_else(|| encode_index(&entries)));
        tail.extend_from_slice(&self.post_apply.to_be_bytes());
        h.update(&tail);
        out.extend_from_slice(&tail);
        out.extend_from_slice(&(CHECKSUM_FLAG | h.finish()).to_be_bytes());
        out
    }
}

fn page_set() -> impl Strategy<Value = (u32, u32, u64, Vec<(u32, u8, u64)>)> {
    (9u32..=16, 1u32..60, 1u64..4, any::<u64>()).prop_flat_map(|(shift, commit, min, seed)| {
        let page_size = 1u32 << shift;
        let pages = if min == 1 {
            Just((1..=commit).collect::<Vec<_>>()).boxed()
        } else {
            proptest::sample::subsequence((1..=commit).collect::<Vec<_>>(), 0..=commit as usize)
                .boxed()
        };
        (Just(page_size), Just(commit), Just(min), pages, Just(seed)).prop_flat_map(
            |(ps, commit, min, pages, seed)| {
                let n = pages.len();
                (
                    Just(ps),
                    Just(commit),
                    Just(min),
                    proptest::collection::vec(0u8..3, n).prop_map(move |kinds| {
                        pages
                            .iter()
                            .zip(kinds)
                            .map(|(&p, k)| (p, k, seed ^ u64::from(p)))
                            .collect()
                    }),
                )
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip((page_size, commit, min, spec) in page_set()) {
        let h = header(page_size, commit, min, min + 2);
        let pages: Vec<_> = spec.iter().map(|&(p, k, s)| (p, page_data(page_size, s, k))).collect();
        let (bytes, trailer) = encode(&h, &pages);
        let (h2, got, t2, idx) = decode(&bytes).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(t2, trailer);
        prop_assert_eq!(trailer.post_apply_checksum, 0);
        prop_assert!(got == pages);
        // Index entries tile the frame area exactly and point at the right page headers.
        let mut next = HEADER_SIZE as u64;
        for (e, (pgno, _)) in idx.iter().zip(&pages) {
            prop_assert_eq!(e.pgno, *pgno);
            prop_assert_eq!(e.offset, next);
            let at = e.offset as usize;
            prop_assert_eq!(&bytes[at..at + 4], &pgno.to_be_bytes());
            prop_assert_eq!(&bytes[at + 4..at + 6], &[0, 1]);
            let len = u32::from_be_bytes(bytes[at + 6..at + 10].try_into().unwrap()) as u64;
            prop_assert_eq!(e.size, 10 + len);
            next += e.size;
        }
        prop_assert_eq!(idx.len(), pages.len());
        prop_assert_eq!(&bytes[next as usize..next as usize + 6], &[0u8; 6]);
        prop_assert_eq!(decode_index_from_tail(&bytes).unwrap(), idx);
    }

    #[test]
    fn flips_never_yield_wrong_pages(seed: u64, kind in 0u8..3, pos: usize, mask in 1u8..=255) {
        let h = header(512, 3, 2, 2);
        let pages: Vec<_> = (1..=3).map(|p| (p, page_data(512, seed ^ u64::from(p), kind))).collect();
        let (mut bytes, _) = encode(&h, &pages);
        let pos = pos % bytes.len();
        bytes[pos] ^= mask;
        // Compressed bytes are not hashed (spec §3.5): a flip that decodes to the same pages
        // is harmless. Anything else must be an error, never wrong data or a panic.
        if let Ok((_, got, _, _)) = decode(&bytes) {
            prop_assert!(got == pages, "flip at {pos} gave wrong pages");
            prop_assert!(pos >= HEADER_SIZE && pos < bytes.len() - 24, "flip at {pos} accepted");
        }
    }
}

#[test]
fn every_flip_is_an_error_or_harmless() {
    let h = header(512, 4, 1, 3);
    let pages: Vec<_> = (1..=4)
        .map(|p| (p, page_data(512, u64::from(p), 0)))
        .collect();
    let (bytes, _) = encode(&h, &pages);
    let idx = decode(&bytes).unwrap().3;
    // LZ4 block bytes are the only ones outside the file checksum (spec §3.5).
    let in_block = |pos: u64| {
        idx.iter()
            .any(|e| pos >= e.offset + 10 && pos < e.offset + e.size)
    };
    let mut harmless = 0;
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[pos] ^= mask;
            match decode(&bad) {
                Err(_) => {}
                Ok((_, got, _, _)) => {
                    assert!(
                        in_block(pos as u64),
                        "flip {mask:#x} at hashed byte {pos} was accepted"
                    );
                    assert!(
                        got == pages,
                        "flip {mask:#x} at byte {pos} gave wrong pages"
                    );
                    harmless += 1;
                }
            }
        }
    }
    // E.g. the match-length nibble of a block's final, literal-only token is never used.
    assert!(harmless < 16, "{harmless} flips had no effect");
}

#[test]
fn every_truncation_and_any_extra_byte_is_an_error() {
    let h = header(1024, 5, 2, 2);
    let pages: Vec<_> = [1, 3, 5]
        .iter()
        .map(|&p| (p, page_data(1024, u64::from(p), 1)))
        .collect();
    let (bytes, _) = encode(&h, &pages);
    for cut in 0..bytes.len() {
        assert!(
            decode(&bytes[..cut]).is_err(),
            "truncation at {cut} was accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode(&longer), Err(LtxError::BadTrailer(_))));
    assert!(matches!(decode(&bytes[..50]), Err(LtxError::Truncated(_))));
}

#[test]
fn finish_alone_verifies_the_whole_file() {
    let h = header(4096, 2, 1, 1);
    let pages: Vec<_> = (1..=2)
        .map(|p| (p, page_data(4096, u64::from(p), 1)))
        .collect();
    let (bytes, trailer) = encode(&h, &pages);
    let (t, idx) = Decoder::new(&bytes[..]).unwrap().finish().unwrap();
    assert_eq!(t, trailer);
    assert_eq!(idx.len(), 2);
    let mut bad = bytes.clone();
    bad[HEADER_SIZE + 20] ^= 0x40;
    assert!(Decoder::new(&bad[..]).unwrap().finish().is_err());
}

#[test]
fn decoder_enforces_page_rules() {
    let h = header(512, 10, 2, 2);
    let p = |s| page_data(512, s, 1);
    let order = Raw::new(h).page(3, 1, p(1)).page(2, 1, p(2)).build();
    assert!(matches!(
        decode(&order),
        Err(LtxError::NonSequentialPage { prev: 3, pgno: 2 })
    ));
    let dup = Raw::new(h).page(3, 1, p(1)).page(3, 1, p(2)).build();
    assert!(matches!(
        decode(&dup),
        Err(LtxError::NonSequentialPage { prev: 3, pgno: 3 })
    ));
    let beyond = Raw::new(h).page(11, 1, p(1)).build();
    assert!(matches!(
        decode(&beyond),
        Err(LtxError::BadPage { pgno: 11, .. })
    ));
    let flags = Raw::new(h).page(1, 3, p(1)).build();
    assert!(matches!(
        decode(&flags),
        Err(LtxError::InvalidFrame { offset: 100, .. })
    ));
    let ps = 65536;
    let lock = lock_pgno(ps);
    let lock_file = Raw::new(header(ps, lock + 1, 2, 2))
        .page(lock, 1, page_data(ps, 1, 2))
        .build();
    assert!(matches!(decode(&lock_file), Err(LtxError::BadPage { pgno, .. }) if pgno == lock));
    let ok = Raw::new(h).page(1, 1, p(1)).page(10, 1, p(2)).build();
    decode(&ok).unwrap();
}

#[test]
fn pages_around_the_real_lock_page() {
    let ps = 65536;
    let lock = lock_pgno(ps);
    let pages = vec![
        (lock - 1, page_data(ps, 1, 1)),
        (lock + 1, page_data(ps, 2, 1)),
    ];
    let (bytes, _) = encode(&header(ps, lock + 1, 2, 2), &pages);
    assert!(decode(&bytes).unwrap().1 == pages);
}

/// A real lock page needs 16384+ pages before it; the same logic is exercised with a pretend
/// lock page at 3 (the field is only reachable from tests).
#[test]
fn snapshots_skip_the_lock_page() {
    let ps = 512;
    let h = header(ps, 5, 1, 1);
    let data = |p: u32| page_data(ps, u64::from(p), 1);
    let mut e = Encoder::new(Vec::new(), &h).unwrap();
    e.lock_pgno = 3;
    e.write_page(1, &data(1)).unwrap();
    e.write_page(2, &data(2)).unwrap();
    assert!(matches!(
        e.write_page(3, &data(3)),
        Err(LtxError::BadPage { pgno: 3, .. })
    ));
    e.write_page(4, &data(4)).unwrap();
    // Commit 5 but the pages end at 4: incomplete.
    assert!(matches!(e.finish(), Err(LtxError::BadPage { pgno: 5, .. })));

    let read_with_lock_3 = |bytes: &[u8]| -> Result<Vec<u32>, LtxError> {
        let mut d = Decoder::new(bytes)?;
        d.lock_pgno = 3;
        let mut buf = vec![0u8; ps as usize];
        let mut got = Vec::new();
        while let Some(p) = d.next_page(&mut buf)? {
            got.push(p);
        }
        d.finish()?;
        Ok(got)
    };
    let short = Raw::new(h)
        .page(1, 1, data(1))
        .page(2, 1, data(2))
        .page(4, 1, data(4))
        .build();
    assert!(matches!(
        read_with_lock_3(&short),
        Err(LtxError::BadPage { pgno: 5, .. })
    ));

    let h = header(ps, 4, 1, 1);
    let mut e = Encoder::new(Vec::new(), &h).unwrap();
    e.lock_pgno = 3;
    for p in [1, 2, 4] {
        e.write_page(p, &data(p)).unwrap();
    }
    let (bytes, _) = e.finish().unwrap();
    assert_eq!(read_with_lock_3(&bytes).unwrap(), vec![1, 2, 4]);
    let with_lock = Raw::new(h)
        .page(1, 1, data(1))
        .page(2, 1, data(2))
        .page(3, 1, data(3))
        .build();
    assert!(matches!(
        read_with_lock_3(&with_lock),
        Err(LtxError::BadPage { pgno: 3, .. })
    ));
    let gap = Raw::new(h).page(1, 1, data(1)).page(4, 1, data(4)).build();
    assert!(matches!(
        read_with_lock_3(&gap),
        Err(LtxError::BadPage { pgno: 2, .. })
    ));
}

#[test]
fn incomplete_snapshot_is_rejected() {
    let h = header(512, 3, 1, 1);
    let gap = Raw::new(h)
        .page(1, 1, page_data(512, 1, 1))
        .page(3, 1, page_data(512, 3, 1))
        .build();
    assert!(matches!(
        decode(&gap),
        Err(LtxError::BadPage { pgno: 2, .. })
    ));
    let short = Raw::new(h)
        .page(1, 1, page_data(512, 1, 1))
        .page(2, 1, page_data(512, 2, 1))
        .build();
    assert!(matches!(
        decode(&short),
        Err(LtxError::BadPage { pgno: 3, .. })
    ));
}

#[test]
fn index_must_match_frames() {
    let h = header(512, 4, 2, 2);
    let base = Raw::new(h)
        .page(1, 1, page_data(512, 1, 1))
        .page(4, 1, page_data(512, 4, 1));
    let good = base.build();
    let idx = decode(&good).unwrap().3;
    let mut wrong = idx.clone();
    wrong[1].offset += 1;
    let shifted = Raw {
        index: Some(encode_index(&wrong)),
        ..base
    };
    assert!(matches!(
        decode(&shifted.build()),
        Err(LtxError::BadIndex(_))
    ));
    let fewer = Raw {
        index: Some(encode_index(&idx[..1])),
        ..shifted
    };
    assert!(matches!(decode(&fewer.build()), Err(LtxError::BadIndex(_))));
    let mut bad_len = encode_index(&idx);
    let n = bad_len.len();
    bad_len[n - 1] += 1;
    let bad_len = Raw {
        index: Some(bad_len),
        ..fewer
    };
    assert!(matches!(
        decode(&bad_len.build()),
        Err(LtxError::BadIndex(_))
    ));
}

#[test]
fn legacy_lz4_frame_pages_decode() {
    let h = header(4096, 6, 2, 2);
    let pages: Vec<_> = [(1, 0u8), (2, 1), (5, 2)]
        .iter()
        .map(|&(p, k)| (p, page_data(4096, u64::from(p), k)))
        .collect();
    let mut raw = Raw::new(h);
    for (p, d) in &pages {
        raw = raw.page(*p, 0, d.clone());
    }
    let bytes = raw.build();
    let (_, got, _, idx) = decode(&bytes).unwrap();
    assert!(got == pages);
    assert_eq!(decode_index_from_tail(&bytes).unwrap(), idx);
    // Mixed encodings in one file decode too.
    let mixed = Raw::new(h)
        .page(1, 0, pages[0].1.clone())
        .page(2, 1, pages[1].1.clone())
        .build();
    assert_eq!(decode(&mixed).unwrap().1.len(), 2);
    for cut in (0..bytes.len()).step_by(7) {
        assert!(
            decode(&bytes[..cut]).is_err(),
            "legacy truncation at {cut} accepted"
        );
    }
}

#[test]
fn checksummed_snapshot_post_apply_is_verified() {
    let data: Vec<_> = (1..=3).map(|p| page_data(512, p, 1)).collect();
    let h = Header {
        flags: 0,
        ..header(512, 3, 1, 1)
    };
    let mut raw = Raw::new(h);
    for (i, d) in data.iter().enumerate() {
        raw = raw.page(i as u32 + 1, 1, d.clone());
    }
    raw.post_apply = database_checksum(512, &data.concat());
    decode(&raw.build()).unwrap();
    raw.post_apply ^= 1;
    assert!(matches!(decode(&raw.build()), Err(LtxError::BadTrailer(_))));
}

#[test]
fn wrong_buffer_size_is_an_error() {
    let (bytes, _) = encode(&header(512, 1, 2, 2), &[(1, vec![0; 512])]);
    let mut d = Decoder::new(&bytes[..]).unwrap();
    assert!(d.next_page(&mut [0u8; 100]).is_err());
}

#[test]
fn byte_at_a_time_reader() {
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let pages: Vec<_> = (1..=3)
        .map(|p| (p, page_data(1024, u64::from(p), 1)))
        .collect();
    let mut raw = Raw::new(header(1024, 3, 2, 2));
    for (p, d) in &pages {
        raw = raw.page(*p, (*p % 2) as u16, d.clone());
    }
    let bytes = raw.build();
    let mut d = Decoder::new(Trickle(&bytes)).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while d.next_page(&mut buf).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    d.finish().unwrap();
}

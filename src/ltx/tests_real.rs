//! Real LTX files written by the official Litestream binaries (`tests/fixtures/ltx/README.md`).
//! Expected values come from the independent Python dumper of the spec (Appendix B).
use super::tests::decode;
use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ltx");

struct Expect {
    path: &'static str,
    commit: u32,
    index: &'static [(u32, u64, u64)],
    file_checksum: u64,
    /// Database checksum of the file's pages (§3.6), 0 = not recorded.
    rolling: u64,
}

const SNAP_17: &[(u32, u64, u64)] = &[(1, 100, 251), (2, 351, 57), (3, 408, 56), (4, 464, 56)];
const SNAP_15: &[(u32, u64, u64)] = &[(1, 100, 266), (2, 366, 72), (3, 438, 71), (4, 509, 71)];

const FILES: &[Expect] = &[
    Expect {
        path: "official-0.5.17/ltx/0/0000000000000001-0000000000000001.ltx",
        commit: 4,
        index: SNAP_17,
        file_checksum: 0xd9ad_d79d_2737_9318,
        rolling: 0xe50d_de92_ff0a_d3d9,
    },
    Expect {
        path: "official-0.5.17/ltx/0/0000000000000002-0000000000000002.ltx",
        commit: 6,
        index: &[(1, 100, 255), (2, 355, 62), (5, 417, 3920), (6, 4337, 1572)],
        file_checksum: 0x9599_c0a7_1fca_6031,
        rolling: 0xd516_bb3e_53b1_6334,
    },
    Expect {
        path: "official-0.5.17/ltx/0/0000000000000003-0000000000000003.ltx",
        commit: 6,
        index: &[(5, 100, 3931)],
        file_checksum: 0xe970_a6d4_e95b_62a7,
        rolling: 0xeb47_7f77_725f_602c,
    },
    Expect {
        path: "official-0.5.17/ltx/9/0000000000000001-0000000000000001.ltx",
        commit: 4,
        index: SNAP_17,
        file_checksum: 0xb4f6_6bcc_ec97_9cba,
        rolling: 0xe50d_de92_ff0a_d3d9,
    },
    Expect {
        path: "official-0.5.15/ltx/0/0000000000000001-0000000000000001.ltx",
        commit: 4,
        index: SNAP_15,
        file_checksum: 0xd919_a6c5_2ef4_a6f1,
        rolling: 0,
    },
    Expect {
        path: "official-0.5.15/ltx/0/0000000000000002-0000000000000002.ltx",
        commit: 6,
        index: &[(1, 100, 270), (2, 370, 77), (5, 447, 3935), (6, 4382, 1587)],
        file_checksum: 0xd9a4_bb50_7df0_4e85,
        rolling: 0,
    },
    Expect {
        path: "official-0.5.15/ltx/1/0000000000000001-0000000000000002.ltx",
        commit: 6,
        index: &[
            (1, 100, 270),
            (2, 370, 77),
            (3, 447, 71),
            (4, 518, 71),
            (5, 589, 3935),
            (6, 4524, 1587),
        ],
        file_checksum: 0x860f_052f_f0db_8dc0,
        rolling: 0,
    },
    Expect {
        path: "official-0.5.15/ltx/9/0000000000000001-0000000000000001.ltx",
        commit: 4,
        index: SNAP_15,
        file_checksum: 0xe405_6203_a1bc_7694,
        rolling: 0,
    },
];

type Pages = Vec<(u32, Vec<u8>)>;

fn load(path: &str) -> (Header, Pages, Trailer, Vec<PageIndexEntry>) {
    let bytes = std::fs::read(format!("{DIR}/{path}")).unwrap();
    decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn official_files_decode_and_verify() {
    for x in FILES {
        // Through a real `File`, as callers do.
        let f = std::fs::File::open(format!("{DIR}/{}", x.path)).unwrap();
        let (t, idx) = Decoder::new(f).unwrap().finish().unwrap();
        assert_eq!(t.file_checksum, x.file_checksum, "{}", x.path);

        let (h, pages, t2, idx2) = load(x.path);
        assert_eq!(t2, t);
        assert_eq!(idx2, idx);
        let name = x.path.rsplit('/').next().unwrap();
        assert_eq!(
            parse_file_name(name),
            Some((h.min_txid, h.max_txid)),
            "{}",
            x.path
        );
        assert_eq!(h.flags, FLAG_NO_CHECKSUM);
        assert_eq!(h.commit, x.commit, "{}", x.path);
        assert_eq!(t.post_apply_checksum, 0);
        let got: Vec<_> = idx.iter().map(|e| (e.pgno, e.offset, e.size)).collect();
        assert_eq!(got, x.index, "{}", x.path);
        if x.rolling != 0 {
            let mut c = DatabaseChecksum::new(h.page_size);
            for (pgno, data) in &pages {
                c.toggle_page(*pgno, data);
            }
            assert_eq!(c.value(), x.rolling, "{}", x.path);
        }
        if let Some((1, p1)) = pages.first() {
            assert_eq!(&p1[..16], b"SQLite format 3\0", "{}", x.path);
            assert_eq!(
                &p1[28..32],
                &x.commit.to_be_bytes(),
                "in-header database size"
            );
        }
    }
}

#[test]
fn legacy_compaction_is_the_merge_of_its_inputs() {
    let (_, snap, _, _) = load(FILES[4].path);
    let (_, incr, _, _) = load(FILES[5].path);
    let (_, l1, _, _) = load(FILES[6].path);
    let mut merged = std::collections::BTreeMap::new();
    merged.extend(snap);
    merged.extend(incr);
    let merged: Vec<_> = merged.into_iter().collect();
    assert!(merged == l1);
}

#[test]
fn snapshot_levels_agree() {
    assert!(load(FILES[0].path).1 == load(FILES[3].path).1);
    assert!(load(FILES[4].path).1 == load(FILES[7].path).1);
}

#[test]
fn reencoded_official_pages_decode_identically() {
    for x in FILES {
        let (h, pages, _, _) = load(x.path);
        let mut e = Encoder::new(Vec::new(), &h).unwrap();
        for (pgno, data) in &pages {
            e.write_page(*pgno, data).unwrap();
        }
        let (bytes, _) = e.finish().unwrap();
        let (h2, pages2, _, _) = decode(&bytes).unwrap();
        assert_eq!(h2, h);
        assert!(pages2 == pages, "{}", x.path);
    }
}

//! Merging a contiguous chain of LTX files into one (spec §2.2): the newest version of each page
//! wins, pages beyond the last file's commit are dropped. Restoring the merged file gives the
//! same database as restoring the chain, which is what lets compaction and snapshots replace
//! their inputs.
//!
//! The merge streams: every input is decoded in page order at the same time (a k-way merge), so
//! memory is one page buffer per input, whatever the database size. Inputs of remote backends are
//! downloaded to spool files first, so no network stream idles while the others are read.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use super::CompactError;
use crate::l0_cache::L0Cache;
use crate::ltx::{Decoder, Encoder, Header, LinkError, FLAG_NO_CHECKSUM};
use crate::replica::{LtxFileInfo, ReplicaClient};
use crate::TxId;

/// Output buffer of the merged file: large sequential writes.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;

/// What a merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub header: Header,
    pub pages: usize,
    pub bytes: u64,
}

/// A downloaded input, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove spool file");
            }
        }
    }
}

struct Input {
    key: String,
    dec: Decoder<Box<dyn Read + Send>>,
    /// The page the decoder is positioned on, `None` at the end.
    pgno: Option<u32>,
    buf: Vec<u8>,
}

impl Input {
    fn advance(&mut self) -> Result<(), CompactError> {
        self.pgno = self
            .dec
            .next_page(&mut self.buf)
            .map_err(|source| CompactError::Ltx {
                key: self.key.clone(),
                source,
            })?;
        Ok(())
    }
}

fn open_input(
    client: &dyn ReplicaClient,
    f: &LtxFileInfo,
    spool_dir: &Path,
    spools: &mut Vec<Spool>,
    cache: Option<&L0Cache>,
) -> Result<Box<dyn Read + Send>, CompactError> {
    if f.level == 0 {
        if let Some(local) = cache.and_then(|c| c.open(f.min_txid, f.max_txid, f.size)) {
            return Ok(Box::new(local));
        }
    }
    let key = client.key(f.level, f.min_txid, f.max_txid);
    let reader = client.open(f.level, f.min_txid, f.max_txid)?;
    if client.is_local() {
        return Ok(reader);
    }
    let path = spool_dir.join(format!(".merge-{:016x}.ltx.part", fastrand::u64(..)));
    let spool = Spool(path.clone());
    let mut out = File::create(&path).map_err(CompactError::io(&path))?;
    let mut reader = reader;
    io::copy(&mut reader, &mut out).map_err(|source| CompactError::Download { key, source })?;
    drop(out);
    let f = File::open(&path).map_err(CompactError::io(&path))?;
    spools.push(spool);
    Ok(Box::new(f))
}

/// Checks that `next` continues the chain ending with `prev` (same page size, no gap, progress).
fn check_link(key: &str, prev: &Header, next: &Header) -> Result<(), CompactError> {
    crate::ltx::check_link(prev, next).map_err(|e| {
        CompactError::Chain(match e {
            LinkError::PageSize { prev, next } => format!(
                "{key}: page size {next} differs from the previous file's {prev}; the chain cannot be merged"
            ),
            LinkError::Txids { prev, next } => format!(
                "{key}: TXIDs {:016x}-{:016x} do not continue {:016x}-{:016x}",
                next.0, next.1, prev.0, prev.1
            ),
        })
    })
}

/// Merges `inputs` (a contiguous chain, in TXID order) into a new LTX file at `out`, named
/// `<first min>-<last max>`, with the newest input's timestamp. `spool_dir` holds downloads of
/// remote inputs while the merge runs; L0 inputs that `cache` holds are read from there. Every input's checksum is verified before the output is
/// complete; on error `out` may hold a partial file that the caller removes.
pub fn merge(
    client: &dyn ReplicaClient,
    inputs: &[LtxFileInfo],
    out: &Path,
    spool_dir: &Path,
    cache: Option<&L0Cache>,
) -> Result<Merged, CompactError> {
    let Some(first) = inputs.first() else {
        return Err(CompactError::Chain("nothing to merge".to_string()));
    };
    let mut spools = Vec::new();
    let mut srcs: Vec<Input> = Vec::with_capacity(inputs.len());
    let mut prev: Option<Header> = None;
    let mut newest_ts = i64::MIN;
    for f in inputs {
        let key = client.key(f.level, f.min_txid, f.max_txid);
        let reader = open_input(client, f, spool_dir, &mut spools, cache)?;
        let dec = Decoder::new(reader).map_err(|source| CompactError::Ltx {
            key: key.clone(),
            source,
        })?;
        let h = *dec.header();
        if (h.min_txid, h.max_txid) != (f.min_txid, f.max_txid) {
            return Err(CompactError::Chain(format!(
                "{key}: header TXID range {:016x}-{:016x} does not match the file name",
                h.min_txid, h.max_txid
            )));
        }
        if let Some(p) = &prev {
            check_link(&key, p, &h)?;
        }
        newest_ts = newest_ts.max(h.timestamp_ms);
        prev = Some(h);
        let buf = vec![0u8; h.page_size as usize];
        srcs.push(Input {
            key,
            dec,
            pgno: None,
            buf,
        });
    }
    let last = prev.expect("at least one input");
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: last.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp_ms: newest_ts,
        ..Header::default()
    };
    let out_key = out.display().to_string();
    let enc_err = |source| CompactError::Ltx {
        key: out_key.clone(),
        source,
    };
    let file = File::create(out).map_err(CompactError::io(out))?;
    let mut enc = Encoder::new(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file), &header)
        .map_err(enc_err)?;
    for s in &mut srcs {
        s.advance()?;
    }
    let lock = header.lock_pgno();
    let mut pages = 0usize;
    while let Some(pgno) = srcs.iter().filter_map(|s| s.pgno).min() {
        // The latest input holding the page has its newest version.
        let winner = srcs
            .iter()
            .rposition(|s| s.pgno == Some(pgno))
            .expect("some input is at pgno");
        if pgno <= header.commit && pgno != lock {
            enc.write_page(pgno, &srcs[winner].buf).map_err(enc_err)?;
            pages += 1;
        }
        for s in srcs.iter_mut().filter(|s| s.pgno == Some(pgno)) {
            s.advance()?;
        }
    }
    for s in srcs {
        let key = s.key;
        s.dec
            .finish()
            .map_err(|source| CompactError::Ltx { key, source })?;
    }
    let bytes = enc.bytes_written();
    let (w, _) = enc.finish().map_err(enc_err)?;
    let file = w
        .into_inner()
        .map_err(|e| CompactError::io(out)(e.into_error()))?;
    file.sync_all().map_err(CompactError::io(out))?;
    Ok(Merged {
        header,
        pages,
        bytes,
    })
}

/// The longest prefix of `files` (sorted by min TXID) that forms a chain by name: each file
/// starts at or before the TXID after the previous one's max and reaches further. Files that
/// are wholly covered by an earlier one are skipped.
pub fn contiguous_prefix(files: &[LtxFileInfo]) -> Vec<LtxFileInfo> {
    let mut out: Vec<LtxFileInfo> = Vec::new();
    let mut reach: TxId = 0;
    for f in files {
        if let Some(_prev) = out.last() {
            if f.min_txid > reach.saturating_add(1) {
                break;
            }
            if f.max_txid <= reach {
                continue;
            }
        }
        reach = f.max_txid;
        out.push(f.clone());
    }
    out
}

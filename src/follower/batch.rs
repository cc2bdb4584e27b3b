//! Downloading a chain of LTX files (each whole, one request per file) into one batch of pages:
//! the newest version of every page, above-commit pages dropped, kept in an unlinked spool file
//! so that memory stays small whatever the batch size.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::FollowError;
use crate::ltx::{self, Decoder, Header, LinkError};
use crate::replica::{LtxFileInfo, ReplicaClient};
use crate::{format_txid, TxId};

/// Read buffer for one downloaded LTX stream.
const DOWNLOAD_BUFFER_BYTES: usize = 256 * 1024;

/// Pages keyed by page number, stored in a temp file that is unlinked as soon as it is created
/// (nothing is left behind after a crash).
pub struct PageSpool {
    file: File,
    page_size: u32,
    index: BTreeMap<u32, u64>,
    len: u64,
}

impl PageSpool {
    pub fn new(dir: &Path, page_size: u32) -> Result<PageSpool, FollowError> {
        let path = dir.join(format!(".follower-spool-{:016x}", fastrand::u64(..)));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(FollowError::io(&path, "create spool file"))?;
        fs::remove_file(&path).map_err(FollowError::io(&path, "unlink spool file"))?;
        Ok(PageSpool {
            file,
            page_size,
            index: BTreeMap::new(),
            len: 0,
        })
    }

    /// Stores the newest version of `pgno` (overwriting an older one in place).
    pub fn put(&mut self, pgno: u32, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), self.page_size as usize);
        let off = match self.index.get(&pgno) {
            Some(&off) => off,
            None => {
                let off = self.len;
                self.len += u64::from(self.page_size);
                self.index.insert(pgno, off);
                off
            }
        };
        self.file.write_all_at(data, off)
    }

    /// Reads `pgno` into `buf`; false if the batch does not hold it.
    pub fn get(&self, pgno: u32, buf: &mut [u8]) -> io::Result<bool> {
        match self.index.get(&pgno) {
            Some(&off) => self.file.read_exact_at(buf, off).map(|_| true),
            None => Ok(false),
        }
    }

    pub fn contains(&self, pgno: u32) -> bool {
        self.index.contains_key(&pgno)
    }

    /// Forgets pages above `commit` (the database shrank).
    pub fn truncate(&mut self, commit: u32) {
        self.index.retain(|&p, _| p <= commit);
    }

    /// Page numbers held, ascending.
    pub fn pgnos(&self) -> impl Iterator<Item = u32> + '_ {
        self.index.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }
}

/// A contiguous run of LTX files decoded into the pages they change.
pub struct Batch {
    /// Min TXID of the first file: the batch applies to a database at any TXID in
    /// `first_min - 1 ..= txid - 1`.
    pub first_min: TxId,
    /// Max TXID of the last file: the state after applying.
    pub txid: TxId,
    pub page_size: u32,
    /// Database size in pages after applying.
    pub commit: u32,
    /// The batch starts at TXID 1: it holds every page of the database (a rebase).
    pub full: bool,
    pub files: usize,
    pub pages: PageSpool,
}

/// Downloads `files` (a contiguous chain, as planned) and decodes them into one batch.
/// Headers are checked against the names and against each other (contiguity, page size);
/// each file's checksum is verified as it ends. `spool_dir` holds the temp file.
pub fn fetch(
    client: &dyn ReplicaClient,
    files: &[LtxFileInfo],
    spool_dir: &Path,
) -> Result<Batch, FollowError> {
    let mut prev: Option<Header> = None;
    let mut spool: Option<PageSpool> = None;
    let mut page = Vec::new();
    for f in files {
        let key = client.key(f.level, f.min_txid, f.max_txid);
        let decode = |source| FollowError::Decode {
            key: key.clone(),
            source,
        };
        let reader = client
            .open(f.level, f.min_txid, f.max_txid)
            .map_err(FollowError::Replica)?;
        let mut dec = Decoder::new(BufReader::with_capacity(DOWNLOAD_BUFFER_BYTES, reader))
            .map_err(decode)?;
        let h = *dec.header();
        check_header(&key, f, &h, prev.as_ref())?;
        let sp = match &mut spool {
            Some(s) => s,
            None => spool.insert(PageSpool::new(spool_dir, h.page_size)?),
        };
        page.resize(h.page_size as usize, 0);
        let lock = ltx::lock_pgno(h.page_size);
        while let Some(pgno) = dec.next_page(&mut page).map_err(decode)? {
            if pgno > h.commit || pgno == lock {
                return Err(FollowError::Invalid {
                    key: key.clone(),
                    reason: format!("page {pgno} is outside the database (commit {})", h.commit),
                });
            }
            sp.put(pgno, &page)
                .map_err(FollowError::io(spool_dir, "write spool file"))?;
        }
        dec.finish().map_err(decode)?;
        sp.truncate(h.commit);
        tracing::debug!(key = %key, commit = h.commit, "fetched ltx file");
        prev = Some(h);
    }
    let (Some(first), Some(last), Some(pages)) = (files.first(), prev, spool) else {
        return Err(FollowError::Internal("fetch of an empty chain"));
    };
    Ok(Batch {
        first_min: first.min_txid,
        txid: last.max_txid,
        page_size: last.page_size,
        commit: last.commit,
        full: first.min_txid == 1,
        files: files.len(),
        pages,
    })
}

fn check_header(
    key: &str,
    f: &LtxFileInfo,
    h: &Header,
    prev: Option<&Header>,
) -> Result<(), FollowError> {
    let invalid = |reason: String| FollowError::Invalid {
        key: key.to_string(),
        reason,
    };
    if h.min_txid != f.min_txid || h.max_txid != f.max_txid {
        return Err(invalid(format!(
            "header TXID range {}-{} does not match the file name",
            format_txid(h.min_txid),
            format_txid(h.max_txid)
        )));
    }
    match prev {
        None => Ok(()),
        Some(p) => ltx::check_link(p, h).map_err(|e| {
            invalid(match e {
                LinkError::PageSize { prev, next } => {
                    format!("page size {next} differs from the previous file's {prev}")
                }
                LinkError::Txids { prev, .. } => format!(
                    "does not continue {}-{}",
                    format_txid(prev.0),
                    format_txid(prev.1)
                ),
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoder, FLAG_NO_CHECKSUM};
    use crate::replica::FileReplica;

    pub(crate) fn put_ltx(
        client: &FileReplica,
        level: u8,
        min: TxId,
        max: TxId,
        commit: u32,
        pages: &[(u32, u8)],
    ) {
        let ps = 512;
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: ps,
            commit,
            min_txid: min,
            max_txid: max,
            timestamp_ms: 1_700_000_000_000 + max as i64,
            ..Header::default()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        for &(pgno, fill) in pages {
            enc.write_page(pgno, &vec![fill; ps as usize]).unwrap();
        }
        let (bytes, _) = enc.finish().unwrap();
        let dir = client.level_dir(level);
        fs::create_dir_all(&dir).unwrap();
        fs::write(client.file_path(level, min, max), bytes).unwrap();
    }

    #[test]
    fn newest_version_wins_and_shrink_drops_pages() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("r"));
        put_ltx(&client, 0, 2, 2, 5, &[(2, 2), (5, 2)]);
        put_ltx(&client, 0, 3, 3, 4, &[(2, 3), (3, 3)]);
        let files = client.list(0).unwrap();
        let b = fetch(&client, &files, dir.path()).unwrap();
        assert_eq!((b.first_min, b.txid, b.commit, b.files), (2, 3, 4, 2));
        assert!(!b.full);
        assert_eq!(b.pages.pgnos().collect::<Vec<_>>(), vec![2, 3]);
        let mut buf = vec![0u8; 512];
        assert!(b.pages.get(2, &mut buf).unwrap());
        assert_eq!(buf, vec![3u8; 512]);
        assert!(!b.pages.get(5, &mut buf).unwrap());
        // The spool file is unlinked: nothing but the replica remains in the directory.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn discontiguous_or_mismatched_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("r"));
        put_ltx(&client, 0, 1, 1, 2, &[(1, 1), (2, 1)]);
        put_ltx(&client, 0, 3, 3, 2, &[(2, 3)]);
        let files = client.list(0).unwrap();
        let err = fetch(&client, &files, dir.path()).err().unwrap();
        assert!(err.to_string().contains("does not continue"), "{err}");
        assert!(
            err.to_string()
                .contains("0000000000000003-0000000000000003.ltx"),
            "{err}"
        );
        // A corrupted file: its key is named.
        let p = client.file_path(0, 1, 1);
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        fs::write(&p, bytes).unwrap();
        let err = fetch(&client, &files[..1], dir.path()).err().unwrap();
        assert!(matches!(err, FollowError::Decode { .. }), "{err}");
    }
}

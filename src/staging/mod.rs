//! Local staging in the meta directory (`.<db>-liblitestream/` beside the database, Litestream's
//! meta-path convention). Design: `docs/staging.md`.
//!
//! ```text
//! .<db>-liblitestream/
//!   state.json                    replicated position (written atomically, off the commit path)
//!   staging/<seq as 16 hex>.seg   captured committed pages, append-only; the newest is active
//!   ltx/0/<min>-<max>.ltx         sealed L0 files waiting for the replica's acknowledgement
//! ```
//! A segment is a sequence of records:
//! `P` pgno:u32 len:u32 page[len]  — one captured page
//! `C` commit record (fixed size, CRC-32 protected): the end of one committed transaction
//! `X` closed record: the WAL generation ended with everything captured (db file fingerprint)
//! A tail without its commit record (a crash mid-append) is ignored by readers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::wal::Checksum;
use crate::TxId;

/// Write buffer of the active segment: large enough that a typical commit is one `write`.
const SEGMENT_BUFFER_BYTES: usize = 256 * 1024;
const SEGMENT_MAGIC: &[u8; 8] = b"LSSEG001";
const REC_PAGE: u8 = b'P';
const REC_COMMIT: u8 = b'C';
const REC_CLOSED: u8 = b'X';
const COMMIT_BODY: usize = 4 + 4 + 8 + 1 + WAL_POS_BYTES;
const CLOSED_BODY: usize = 8 + 8;
const WAL_POS_BYTES: usize = 4 + 4 + 8 + 4 + 4 + 1;
static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

#[derive(Debug, Error)]
pub enum StagingError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: corrupt staging data at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "{path}: unreadable state file: {reason} (move it away to start a new replica position)"
    )]
    BadState { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StagingError + '_ {
    move |source| StagingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the captured stream ends in the `-wal` file: the continuity proof for the next capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WalPos {
    pub salt1: u32,
    pub salt2: u32,
    /// Byte offset just past the last captured commit frame.
    pub offset: u64,
    /// Running WAL checksum at `offset`.
    pub checksum: Checksum,
    pub big_endian: bool,
}

/// Identity of the database file when no WAL frames were outstanding (after a checkpoint that
/// emptied the WAL). If the file still has this identity, nothing changed it behind our back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFingerprint {
    pub len: u64,
    pub mtime_ns: i64,
}

/// One committed transaction's end, as recorded in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    pub db_size: u32,
    pub page_size: u32,
    pub timestamp_ms: i64,
    /// The pages since the previous commit record hold the whole database.
    pub full: bool,
    pub wal: WalPos,
}

/// The replicated position, persisted in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Highest TXID sealed into a local L0 file.
    pub txid: TxId,
    /// Highest TXID the replica acknowledged.
    pub replicated_txid: TxId,
    /// Highest segment sequence number sealed into `txid`.
    pub sealed_segment: u64,
    /// Capture position at the end of the last sealed commit (None: nothing sealed yet).
    pub wal: Option<WalPos>,
    /// Set when the last sealed record was a clean end of a WAL generation.
    pub closed: Option<DbFingerprint>,
    pub page_size: u32,
    /// Database size in pages at `txid`.
    pub commit: u32,
    /// The replica this position belongs to (its URL); a different replica starts over.
    pub replica: String,
}

/// Paths inside one database's meta directory.
#[derive(Debug, Clone)]
pub struct MetaDir {
    pub root: PathBuf,
}

impl MetaDir {
    /// [`crate::config::default_meta_dir`], unless `meta-path` says otherwise.
    pub fn for_db(db_path: &Path, meta_path: Option<&Path>) -> MetaDir {
        let root = match meta_path {
            Some(p) => p.to_path_buf(),
            None => crate::config::default_meta_dir(db_path),
        };
        MetaDir { root }
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub fn l0_dir(&self) -> PathBuf {
        self.root.join("ltx").join("0")
    }

    pub fn segment_path(&self, seq: u64) -> PathBuf {
        self.staging_dir().join(format!("{seq:016x}.seg"))
    }

    pub fn l0_path(&self, min: TxId, max: TxId) -> PathBuf {
        self.l0_dir().join(crate::ltx::format_file_name(min, max))
    }

    /// Creates the meta directory itself, all an open needs (the stager lock and `state.json`
    /// live there). `staging` and `ltx/0` are created by the first file written into them
    /// ([`create_file`]): a database opened and never written costs one directory, not four.
    pub fn create_root(&self) -> Result<(), StagingError> {
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))
    }

    pub fn create_dirs(&self) -> Result<(), StagingError> {
        for d in [self.staging_dir(), self.l0_dir()] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    pub fn load_state(&self) -> Result<Option<State>, StagingError> {
        let path = self.state_path();
        match crate::small_file::read_bounded(&path, crate::small_file::MAX_SMALL_FILE) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StagingError::BadState {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) => Err(StagingError::Io { path, source: e }),
        }
    }

    /// Writes `state.json` atomically (temp file, fsync, rename).
    pub fn save_state(&self, state: &State) -> Result<(), StagingError> {
        let path = self.state_path();
        let tmp = self.root.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_file_synced(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }

    /// Segment sequence numbers present, ascending.
    pub fn list_segments(&self) -> Result<Vec<u64>, StagingError> {
        list_names(&self.staging_dir(), |name| {
            let hex = name.strip_suffix(".seg")?;
            (hex.len() == 16)
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten()
        })
    }

    /// Sealed local L0 files `(min, max)`, ascending.
    pub fn list_l0(&self) -> Result<Vec<(TxId, TxId)>, StagingError> {
        list_names(&self.l0_dir(), crate::ltx::parse_file_name)
    }
}

fn list_names<T: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, StagingError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(StagingError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(v) = entry.file_name().to_str().and_then(&parse) {
            out.push(v);
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), StagingError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Opens `path` with `open` (which creates the file), creating its directory first if it does
/// not exist yet (see [`MetaDir::create_root`]).
pub(crate) fn create_file(
    path: &Path,
    open: impl Fn(&Path) -> io::Result<File>,
) -> Result<File, StagingError> {
    match open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            open(path).map_err(io_err(path))
        }
        r => r.map_err(io_err(path)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StagingError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The active segment, appended to by the capture path.
///
/// Records are buffered and written when a commit or closed record ends them (or the buffer
/// fills), so a typical commit costs one `write`.
pub struct SegmentWriter {
    pub seq: u64,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Bytes of complete records (through the last commit or closed record).
    committed_len: u64,
}

impl SegmentWriter {
    /// Creates segment `seq`, or continues an existing one after its last complete record.
    pub fn open(meta: &MetaDir, seq: u64) -> Result<SegmentWriter, StagingError> {
        let path = meta.segment_path(seq);
        let mut file = create_file(&path, |p| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
        })?;
        let existing = file.metadata().map_err(io_err(&path))?.len();
        let len = if existing < SEGMENT_MAGIC.len() as u64 {
            // New, or torn before its header was complete.
            file.set_len(0).map_err(io_err(&path))?;
            file.write_all(SEGMENT_MAGIC).map_err(io_err(&path))?;
            SEGMENT_MAGIC.len() as u64
        } else {
            // Drop a torn tail so new records follow the last complete one.
            let complete = SegmentReader::open(&path)?.scan_complete_len()?;
            file.set_len(complete).map_err(io_err(&path))?;
            complete
        };
        file.seek(SeekFrom::Start(len)).map_err(io_err(&path))?;
        Ok(SegmentWriter {
            seq,
            path,
            file,
            buf: Vec::new(),
            buf_start: len,
            committed_len: len,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StagingError> {
        if self.buf.len() + bytes.len() > SEGMENT_BUFFER_BYTES && !self.buf.is_empty() {
            self.write_out()?;
        }
        if bytes.len() > SEGMENT_BUFFER_BYTES {
            self.file.write_all(bytes).map_err(io_err(&self.path))?;
            self.buf_start += bytes.len() as u64;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), StagingError> {
        self.file.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > SEGMENT_BUFFER_BYTES {
            self.buf.shrink_to(SEGMENT_BUFFER_BYTES);
        }
        Ok(())
    }

    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), StagingError> {
        let mut head = [0u8; 9];
        head[0] = REC_PAGE;
        head[1..5].copy_from_slice(&pgno.to_be_bytes());
        head[5..9].copy_from_slice(&(data.len() as u32).to_be_bytes());
        self.append(&head)?;
        self.append(data)
    }

    /// Ends a transaction and hands the bytes to the OS (no fsync: see docs/staging.md).
    pub fn write_commit(&mut self, c: &CommitRecord) -> Result<(), StagingError> {
        let mut body = [0u8; COMMIT_BODY];
        body[0..4].copy_from_slice(&c.db_size.to_be_bytes());
        body[4..8].copy_from_slice(&c.page_size.to_be_bytes());
        body[8..16].copy_from_slice(&c.timestamp_ms.to_be_bytes());
        body[16] = u8::from(c.full);
        encode_wal_pos(&c.wal, &mut body[17..]);
        self.write_record(REC_COMMIT, &body)
    }

    pub fn write_closed(&mut self, f: &DbFingerprint) -> Result<(), StagingError> {
        let mut body = [0u8; CLOSED_BODY];
        body[0..8].copy_from_slice(&f.len.to_be_bytes());
        body[8..16].copy_from_slice(&f.mtime_ns.to_be_bytes());
        self.write_record(REC_CLOSED, &body)
    }

    fn write_record(&mut self, kind: u8, body: &[u8]) -> Result<(), StagingError> {
        let crc = CRC32.checksum(body);
        self.append(&[kind])?;
        self.append(body)?;
        self.append(&crc.to_be_bytes())?;
        self.write_out()?;
        self.committed_len = self.buf_start;
        Ok(())
    }

    /// Forgets records written since the last complete record (a transaction without its
    /// commit frame, or a capture that failed midway).
    pub fn discard_partial(&mut self) -> Result<(), StagingError> {
        self.buf.clear();
        if self.buf_start != self.committed_len {
            self.file
                .set_len(self.committed_len)
                .map_err(io_err(&self.path))?;
            self.file
                .seek(SeekFrom::Start(self.committed_len))
                .map_err(io_err(&self.path))?;
            self.buf_start = self.committed_len;
        }
        Ok(())
    }

    /// Bytes of complete records.
    pub fn len(&self) -> u64 {
        self.committed_len
    }

    pub fn is_empty(&self) -> bool {
        self.committed_len <= SEGMENT_MAGIC.len() as u64
    }
}

fn encode_wal_pos(p: &WalPos, out: &mut [u8]) {
    out[0..4].copy_from_slice(&p.salt1.to_be_bytes());
    out[4..8].copy_from_slice(&p.salt2.to_be_bytes());
    out[8..16].copy_from_slice(&p.offset.to_be_bytes());
    out[16..20].copy_from_slice(&p.checksum.0.to_be_bytes());
    out[20..24].copy_from_slice(&p.checksum.1.to_be_bytes());
    out[24] = u8::from(p.big_endian);
}

fn decode_wal_pos(b: &[u8]) -> WalPos {
    let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    WalPos {
        salt1: u32_at(0),
        salt2: u32_at(4),
        offset: u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
        checksum: Checksum(u32_at(16), u32_at(20)),
        big_endian: b[24] != 0,
    }
}

/// One record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A page: its number and where its bytes are (`offset`, `len`) in the segment file.
    Page {
        pgno: u32,
        offset: u64,
        len: u32,
    },
    Commit(CommitRecord),
    Closed(DbFingerprint),
}

/// Sequential reader of one segment; stops cleanly at a torn tail.
pub struct SegmentReader {
    path: PathBuf,
    input: BufReader<File>,
    pos: u64,
    file_len: u64,
}

impl SegmentReader {
    pub fn open(path: &Path) -> Result<SegmentReader, StagingError> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut input = BufReader::with_capacity(SEGMENT_BUFFER_BYTES, file);
        if file_len < SEGMENT_MAGIC.len() as u64 {
            // Killed between creating the segment and writing its header: no records.
            return Ok(SegmentReader {
                path: path.to_path_buf(),
                input,
                pos: SEGMENT_MAGIC.len() as u64,
                file_len: 0,
            });
        }
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| StagingError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: "missing segment header".into(),
            })?;
        if &magic != SEGMENT_MAGIC {
            return Err(StagingError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: "bad segment magic".into(),
            });
        }
        Ok(SegmentReader {
            path: path.to_path_buf(),
            input,
            pos: 8,
            file_len,
        })
    }

    /// Opens `path` and continues reading at byte `offset` (a record boundary a previous
    /// reader stopped at; see [`SegmentReader::position`]).
    pub fn open_at(path: &Path, offset: u64) -> Result<SegmentReader, StagingError> {
        let mut r = SegmentReader::open(path)?;
        let target = offset.min(r.file_len);
        if target > r.pos {
            r.input
                .seek_relative((target - r.pos) as i64)
                .map_err(io_err(path))?;
            r.pos = target;
        }
        Ok(r)
    }

    /// Byte offset of the next record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next record, or `None` at the end or at a torn tail. Page bytes are skipped;
    /// read them later with [`read_page_at`].
    pub fn next_record(&mut self) -> Result<Option<Record>, StagingError> {
        let mut kind = [0u8; 1];
        if self.pos + 1 > self.file_len {
            return Ok(None);
        }
        self.input
            .read_exact(&mut kind)
            .map_err(io_err(&self.path))?;
        let start = self.pos;
        self.pos += 1;
        match kind[0] {
            REC_PAGE => {
                let mut head = [0u8; 8];
                if !self.read_exact_or_tail(&mut head)? {
                    return Ok(None);
                }
                let pgno = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
                let len = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
                let offset = self.pos;
                if offset + u64::from(len) > self.file_len {
                    return Ok(None);
                }
                self.input
                    .seek_relative(i64::from(len))
                    .map_err(io_err(&self.path))?;
                self.pos += u64::from(len);
                Ok(Some(Record::Page { pgno, offset, len }))
            }
            REC_COMMIT => {
                let mut body = [0u8; COMMIT_BODY + 4];
                if !self.read_exact_or_tail(&mut body)? || !crc_ok(&body) {
                    return Ok(None);
                }
                let b = &body[..COMMIT_BODY];
                Ok(Some(Record::Commit(CommitRecord {
                    db_size: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
                    page_size: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
                    timestamp_ms: i64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
                    full: b[16] != 0,
                    wal: decode_wal_pos(&b[17..]),
                })))
            }
            REC_CLOSED => {
                let mut body = [0u8; CLOSED_BODY + 4];
                if !self.read_exact_or_tail(&mut body)? || !crc_ok(&body) {
                    return Ok(None);
                }
                Ok(Some(Record::Closed(DbFingerprint {
                    len: u64::from_be_bytes(body[0..8].try_into().expect("8 bytes")),
                    mtime_ns: i64::from_be_bytes(body[8..16].try_into().expect("8 bytes")),
                })))
            }
            // Zeros or garbage after a crash: the end of usable data.
            _ => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    fn read_exact_or_tail(&mut self, buf: &mut [u8]) -> Result<bool, StagingError> {
        if self.pos + buf.len() as u64 > self.file_len {
            return Ok(false);
        }
        self.input.read_exact(buf).map_err(io_err(&self.path))?;
        self.pos += buf.len() as u64;
        Ok(true)
    }

    /// Length of the prefix that ends with the last complete commit or closed record.
    pub fn scan_complete_len(mut self) -> Result<u64, StagingError> {
        let mut complete = 8;
        while let Some(rec) = self.next_record()? {
            if !matches!(rec, Record::Page { .. }) {
                complete = self.pos;
            }
        }
        Ok(complete)
    }
}

fn crc_ok(body_and_crc: &[u8]) -> bool {
    let (body, crc) = body_and_crc.split_at(body_and_crc.len() - 4);
    CRC32.checksum(body) == u32::from_be_bytes(crc.try_into().expect("4 bytes"))
}

/// Reads `buf.len()` bytes at `offset` of an open segment file.
pub fn read_page_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(test)]
mod tests;

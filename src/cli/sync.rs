//! `litestream sync [-wait] [-timeout SECONDS] [-json] DB_PATH`: the official 0.5.17 command,
//! with its text and JSON output, for a replication engine without a daemon.
//!
//! The official binary asks its running `replicate` daemon over a control socket to turn the
//! WAL into an L0 file now (and, with `-wait`, to upload it). Ours has no daemon: a database is
//! staged and shipped by the process that holds `writer.lock` in its meta directory (the stager,
//! `docs/staging.md`), every `sync-interval` (1 s by default) and at its last close. So `sync`
//! reads the meta directory instead of asking:
//! - the stager has sealed everything committed once the `-wal` holds no frame past the
//!   position `state.json` records for the last sealed commit; `sync` waits for that, and
//!   reports the sealed TXID;
//! - with `-wait`, it also waits until no sealed L0 file is left to upload (uploaded files leave
//!   `l0/`), then reads the replica's TXID from the replica itself;
//! - when no process holds the lock, nothing will ship: if everything is shipped it answers at
//!   once, else it fails saying how to ship the rest.
//!
//! `-socket` is accepted (and ignored) so that scripts written for the official binary run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::flags::FlagSet;
use super::{config_arg, CliError};
use crate::staging::MetaDir;

pub const SYNC_USAGE: &str = "\
usage: litestream sync [OPTIONS] DB_PATH

Force an immediate sync for a database.

liblitestream has no daemon: the process replicating the database (the one
holding writer.lock in its meta directory) ships every sync-interval. sync
waits until that process has turned every committed transaction into an LTX
file (and, with -wait, until the replica has it), then prints the positions.

Options:
  -wait
      Block until sync completes including remote replication (default: false).

  -timeout SECONDS
      Maximum time to wait in seconds, best-effort (default: 30).

  -socket PATH
      Accepted for compatibility with the official binary; ignored (no control socket).

  -config PATH
      Specifies the configuration file.
      Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

  -no-expand-env
      Disables environment variable expansion in configuration file.

  -json
      Output raw JSON instead of human-readable text.

Examples:
  $ litestream sync /path/to/db
  $ litestream sync -json /path/to/db
  $ litestream sync -wait /path/to/db
  $ litestream sync -wait -timeout 120 /path/to/db
";

/// The official default of `-timeout` (seconds).
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// How often the meta directory is read while waiting: two small reads a time, and the stager
/// seals at most once per `sync-interval` (1 s by default), so a tenth of that is prompt.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The official `SyncResult`.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct SyncResult {
    pub db_path: String,
    pub txid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_txid: Option<u64>,
    pub duration_ms: u64,
}

impl SyncResult {
    /// The official text form.
    pub fn text(&self) -> String {
        let mut s = format!("db_path: {}\ntxid: {}\n", self.db_path, self.txid);
        if let Some(r) = self.replica_txid {
            s.push_str(&format!("replica_txid: {r}\n"));
        }
        s.push_str(&format!("duration_ms: {}\n", self.duration_ms));
        s
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// `major:minor:inode` of `path` as `/proc/locks` writes it (`%02x:%02x:%lu`).
fn lock_id(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let dev = m.dev();
    // glibc's gnu_dev_major / gnu_dev_minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some(format!("{major:02x}:{minor:02x}:{}", m.ino()))
}

/// The pid holding the lock whose `/proc/locks` id is `id`, from the text of `/proc/locks`.
fn holder_in(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters carry "->".
        if f.get(1) == Some(&"->") {
            return None;
        }
        let i = f.iter().position(|w| *w == id)?;
        f.get(i.checked_sub(1)?)?.parse().ok()
    })
}

/// The process that stages and ships the database (holds its `writer.lock`), read from
/// `/proc/locks` without taking the lock: taking it, even briefly, could make a committing
/// process leave its commit for a later one.
fn stager_pid(meta: &MetaDir) -> Option<u32> {
    let id = lock_id(&crate::stager::lock_path(meta))?;
    holder_in(&std::fs::read_to_string("/proc/locks").ok()?, &id)
}

/// Whether the `-wal` holds a frame past the last sealed commit: a frame of the WAL's current
/// generation (its salts equal the header's) at the sealed offset, or at the first frame when
/// the WAL was restarted since (other salts) or nothing was sealed yet. Stale frames of an
/// older generation beyond the end do not count, as SQLite ignores them too.
fn unsealed_commits(db: &Path, meta: &MetaDir) -> bool {
    use std::os::unix::fs::FileExt;
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let Ok(file) = std::fs::File::open(PathBuf::from(wal)) else {
        return false;
    };
    let mut header = [0u8; crate::wal::WAL_HEADER_SIZE as usize];
    if file.read_exact_at(&mut header, 0).is_err() {
        return false;
    }
    let salts = &header[16..24];
    let sealed = meta.load_state().ok().flatten().and_then(|st| st.wal);
    let offset = match sealed {
        Some(p) if [p.salt1.to_be_bytes(), p.salt2.to_be_bytes()].concat() == salts => p.offset,
        _ => crate::wal::WAL_HEADER_SIZE,
    };
    let mut frame = [0u8; crate::wal::FRAME_HEADER_SIZE as usize];
    file.read_exact_at(&mut frame, offset).is_ok() && &frame[8..16] == salts
}

/// Sealed L0 files not uploaded yet.
fn unshipped_files(meta: &MetaDir) -> Result<usize, CliError> {
    Ok(meta
        .list_l0()
        .map_err(|e| usage(format!("cannot read the meta directory: {e}")))?
        .len())
}

pub fn run_sync(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let start = Instant::now();
    let f = config_arg::flags(FlagSet::new())
        .bool("wait")
        .value("timeout")
        .value("socket")
        .bool("json")
        .parse(args)?;
    let arg = f.db_path_arg("sync")?;
    let timeout_secs = match f.get("timeout") {
        None => DEFAULT_TIMEOUT_SECS,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n > 0 => n as u64,
            Ok(_) => return Err(usage("timeout must be greater than 0")),
            Err(_) => {
                return Err(usage(format!(
                    "invalid value {t:?} for flag -timeout: a whole number of seconds"
                )))
            }
        },
    };
    let deadline = start + Duration::from_secs(timeout_secs);
    let wait = f.flag("wait");
    let cfg = config_arg::load_parsed(&f)?;
    let dbc = cfg
        .find_db(Path::new(&arg))
        .ok_or_else(|| usage(format!("database not found in config: {arg}")))?;
    let meta = MetaDir::for_db(&dbc.path, dbc.meta_path.as_deref());
    let shown = dbc.path.display().to_string();

    // Sealed: every commit is in an L0 file. Shipped (-wait): no L0 file is left to upload.
    let done = |meta: &MetaDir| -> Result<bool, CliError> {
        Ok(!unsealed_commits(&dbc.path, meta) && (!wait || unshipped_files(meta)? == 0))
    };
    loop {
        if done(&meta)? {
            break;
        }
        if stager_pid(&meta).is_none() {
            return Err(usage(format!(
                "{shown} has committed changes that are not {} and no process replicates it \
                 (none holds {}): open the database through the extension (its first commit \
                 or its last close ships them), or run the program that writes it under \
                 `litestream replicate -exec`",
                if wait {
                    "on the replica"
                } else {
                    "in an LTX file"
                },
                crate::stager::lock_path(&meta).display()
            )));
        }
        if Instant::now() >= deadline {
            return Err(usage(format!(
                "sync failed: {shown} not {} within {timeout_secs} s; the replicating process \
                 (pid {}) ships every sync-interval: see its log, or `litestream status`",
                if wait { "replicated" } else { "synced" },
                stager_pid(&meta).map_or("-".into(), |p| p.to_string()),
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let txid = meta
        .load_state()
        .map_err(|e| usage(format!("cannot read the meta directory: {e}")))?
        .map_or(0, |s| s.txid);
    let replica_txid = if wait {
        let client = crate::replica::client_for(&dbc.replica)?;
        Some(client.max_txid()?)
    } else {
        None
    };
    let result = SyncResult {
        db_path: shown,
        txid,
        replica_txid,
        duration_ms: start.elapsed().as_millis() as u64,
    };
    if f.flag("json") {
        let text = serde_json::to_string_pretty(&result).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", result.text())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_has_the_official_fields() {
        let r = SyncResult {
            db_path: "/data/app.db".into(),
            txid: 7,
            replica_txid: Some(7),
            duration_ms: 12,
        };
        assert_eq!(
            r.text(),
            "db_path: /data/app.db\ntxid: 7\nreplica_txid: 7\nduration_ms: 12\n"
        );
        assert_eq!(
            serde_json::to_string_pretty(&r).unwrap(),
            "{\n  \"db_path\": \"/data/app.db\",\n  \"txid\": 7,\n  \"replica_txid\": 7,\n  \"duration_ms\": 12\n}"
        );
        let r = SyncResult {
            replica_txid: None,
            ..r
        };
        assert_eq!(
            r.text(),
            "db_path: /data/app.db\ntxid: 7\nduration_ms: 12\n"
        );
        assert!(!serde_json::to_string(&r).unwrap().contains("replica_txid"));
    }

    #[test]
    fn lock_holder_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 00:2c:123 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 77 00:2c:123 0 EOF\n\
                     2: POSIX  ADVISORY  READ 99 08:01:555 128 128\n";
        assert_eq!(holder_in(locks, "00:2c:123"), Some(4242));
        assert_eq!(holder_in(locks, "08:01:555"), Some(99));
        assert_eq!(holder_in(locks, "08:01:556"), None);
    }

    #[test]
    fn a_lock_this_process_holds_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir {
            root: dir.path().to_path_buf(),
        };
        assert_eq!(stager_pid(&meta), None, "no lock file");
        let lock = crate::stager::try_lock(&meta).unwrap().expect("free");
        assert_eq!(stager_pid(&meta), Some(std::process::id()));
        drop(lock);
        assert_eq!(stager_pid(&meta), None);
    }

    #[test]
    fn bad_arguments_are_refused_like_the_official() {
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            run_sync(&args, &mut Vec::new()).unwrap_err().to_string()
        };
        assert!(run(&[]).contains("database path required"));
        assert!(run(&["a", "b"]).contains("too many arguments"));
        assert!(run(&["-timeout", "0", "a"]).contains("timeout must be greater than 0"));
        assert!(run(&["-timeout", "x", "a"]).contains("-timeout"));
    }
}

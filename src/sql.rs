//! The SQL surface, safe side: `PRAGMA litestream.<name>` / `PRAGMA litestream_<name>` and the
//! `litestream_*()` functions. The FFI layer ([`crate::ffi::sql_shim`]) only decodes SQLite's
//! arguments, implements [`Conn`] for a connection and hands results back.
//! Mechanism and side effects: `docs/sql-surface.md`.

use std::sync::Arc;
use std::time::Duration;

use crate::database::Database;

/// How long `PRAGMA litestream.checkpoint` waits for the replica by default: Litestream's
/// default `shutdown-sync-timeout`, the longest a caller should block for one sync. Change it
/// per connection with `PRAGMA litestream.checkpoint_timeout`.
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);

/// Pragma names answered on the control database attached as `litestream` (`PRAGMA
/// litestream.<name>`); on a main database they carry the `litestream_` prefix instead.
pub const PRAGMAS: [&str; 4] = ["checkpoint", "status", "lag", "checkpoint_timeout"];

/// Why a pragma or SQL function of ours fails (the statement's error message).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("litestream: unknown checkpoint mode {0:?}; use PASSIVE, FULL, RESTART or TRUNCATE")]
    UnknownMode(String),
    #[error(
        "litestream: bad checkpoint_timeout {0:?}: give milliseconds or a duration such as 5s"
    )]
    BadTimeout(String),
    #[error(
        "litestream: this connection's database is not replicated (open it through the litestream \
         VFS, with ?vfs=litestream or LD_PRELOAD, and name it in the configuration or add a \
         replica= URI parameter)"
    )]
    NotReplicated,
    #[error("litestream: not checkpointed: {0}")]
    NotCheckpointed(#[from] crate::uploader::SyncNowError),
    /// The replica has everything up to `txid` (16 hex digits), but SQLite's checkpoint
    /// failed.
    #[error("litestream: the replica has everything up to TXID {txid}, but the WAL checkpoint failed: {source} (run it outside a transaction)")]
    WalCheckpoint {
        txid: String,
        source: WalCheckpointError,
    },
}

/// Why SQLite's own WAL checkpoint (`sqlite3_wal_checkpoint_v2`) failed.
#[derive(Debug, thiserror::Error)]
pub enum WalCheckpointError {
    #[error("checkpoints run only on a connection's main database")]
    NoConnection,
    #[error("{message}")]
    Sqlite { code: i32, message: String },
}

/// `sqlite3_wal_checkpoint_v2` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    Passive = 0,
    Full = 1,
    Restart = 2,
    Truncate = 3,
}

impl CheckpointMode {
    /// `PASSIVE`, `FULL`, `RESTART`, `TRUNCATE` (any case); `None`/empty means PASSIVE.
    pub fn parse(arg: Option<&str>) -> Result<CheckpointMode, SqlError> {
        let a = arg.map(str::trim).unwrap_or("");
        Ok(match a.to_ascii_uppercase().as_str() {
            "" | "PASSIVE" => CheckpointMode::Passive,
            "FULL" => CheckpointMode::Full,
            "RESTART" => CheckpointMode::Restart,
            "TRUNCATE" => CheckpointMode::Truncate,
            _ => return Err(SqlError::UnknownMode(a.to_string())),
        })
    }
}

/// The result of `sqlite3_wal_checkpoint_v2`, as `PRAGMA wal_checkpoint` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// The checkpoint could not finish because of other connections (SQLITE_BUSY).
    pub busy: bool,
    /// Frames in the WAL, and frames checkpointed (-1 when not in WAL mode).
    pub log: i32,
    pub checkpointed: i32,
}

/// What the pragmas and functions need from one connection.
pub trait Conn {
    /// The managed database of the connection's main schema; `None`: not replicated.
    fn database(&self) -> Option<Arc<Database>>;
    fn checkpoint_timeout(&self) -> Duration;
    fn set_checkpoint_timeout(&self, d: Duration);
    /// Runs the WAL checkpoint of `main`; `Err` carries SQLite's message.
    fn wal_checkpoint(&self, mode: CheckpointMode) -> Result<WalCheckpoint, WalCheckpointError>;
}

/// Where a pragma arrived: at the control database (`PRAGMA litestream.x`) or at a database
/// file (`PRAGMA litestream_x`, `PRAGMA main.litestream_x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Control,
    Database,
}

/// The pragma `name` is one of ours: its short name.
pub fn ours(name: &str, via: Via) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let short = match via {
        Via::Control => lower.as_str(),
        Via::Database => lower.strip_prefix("litestream_")?,
    };
    PRAGMAS.iter().copied().find(|p| *p == short)
}

/// The error of a pragma or function on a connection whose database is not replicated.
pub fn not_replicated() -> String {
    SqlError::NotReplicated.to_string()
}

/// Answers pragma `name` (`None`: not ours, SQLite goes on) with argument `arg`.
/// `Ok(text)` is the single result row; `Err` becomes the statement's error.
pub fn pragma(
    name: &str,
    arg: Option<&str>,
    via: Via,
    conn: &dyn Conn,
) -> Option<Result<String, SqlError>> {
    let short = ours(name, via)?;
    Some(run(short, arg, conn))
}

fn run(short: &str, arg: Option<&str>, conn: &dyn Conn) -> Result<String, SqlError> {
    if short == "checkpoint_timeout" {
        if let Some(a) = arg {
            conn.set_checkpoint_timeout(parse_timeout(a)?);
        }
        return Ok(conn.checkpoint_timeout().as_millis().to_string());
    }
    let db = conn.database().ok_or(SqlError::NotReplicated)?;
    match short {
        "status" => Ok(crate::status::of(&db).to_json()),
        // `{:?}` keeps the decimal point (0.0), as SQLite prints REAL values.
        "lag" => Ok(format!("{:?}", crate::status::of(&db).lag)),
        _ => checkpoint(&db, arg, conn),
    }
}

/// `checkpoint_timeout` values: milliseconds, or a Go duration (`5s`, `1m30s`).
pub fn parse_timeout(a: &str) -> Result<Duration, SqlError> {
    let a = a.trim();
    if let Ok(ms) = a.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    crate::config::parse_duration(a).map_err(|_| SqlError::BadTimeout(a.to_string()))
}

/// Ships everything committed, waits for the replica, then checkpoints the WAL.
pub fn checkpoint(
    db: &Arc<Database>,
    arg: Option<&str>,
    conn: &dyn Conn,
) -> Result<String, SqlError> {
    let mode = CheckpointMode::parse(arg)?;
    let txid = crate::uploader::sync_now(db, conn.checkpoint_timeout())?;
    let ck = conn
        .wal_checkpoint(mode)
        .map_err(|source| SqlError::WalCheckpoint {
            txid: crate::format_txid(txid),
            source,
        })?;
    Ok(checkpoint_json(txid, &ck))
}

/// The row of `PRAGMA litestream.checkpoint`.
pub fn checkpoint_json(txid: crate::TxId, ck: &WalCheckpoint) -> String {
    #[derive(serde::Serialize)]
    struct Row {
        replicated_txid: String,
        busy: i32,
        log: i32,
        checkpointed: i32,
    }
    let row = Row {
        replicated_txid: crate::format_txid(txid),
        busy: i32::from(ck.busy),
        log: ck.log,
        checkpointed: ck.checkpointed,
    };
    serde_json::to_string(&row).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fake {
        timeout: Cell<Duration>,
        ck: Cell<Option<CheckpointMode>>,
    }

    impl Conn for Fake {
        fn database(&self) -> Option<Arc<Database>> {
            None
        }
        fn checkpoint_timeout(&self) -> Duration {
            self.timeout.get()
        }
        fn set_checkpoint_timeout(&self, d: Duration) {
            self.timeout.set(d)
        }
        fn wal_checkpoint(
            &self,
            mode: CheckpointMode,
        ) -> Result<WalCheckpoint, WalCheckpointError> {
            self.ck.set(Some(mode));
            Err(WalCheckpointError::NoConnection)
        }
    }

    #[test]
    fn names_and_modes() {
        assert_eq!(ours("checkpoint", Via::Control), Some("checkpoint"));
        assert_eq!(ours("CheckPoint", Via::Control), Some("checkpoint"));
        assert_eq!(ours("litestream_status", Via::Database), Some("status"));
        assert_eq!(
            ours("status", Via::Database),
            None,
            "plain names stay SQLite's"
        );
        assert_eq!(ours("journal_mode", Via::Control), None);
        assert_eq!(ours("litestream_nosuch", Via::Database), None);
        assert_eq!(
            CheckpointMode::parse(None).ok(),
            Some(CheckpointMode::Passive)
        );
        assert_eq!(
            CheckpointMode::parse(Some("truncate")).ok(),
            Some(CheckpointMode::Truncate)
        );
        assert_eq!(
            CheckpointMode::parse(Some(" FULL ")).ok(),
            Some(CheckpointMode::Full)
        );
        assert_eq!(
            CheckpointMode::parse(Some("Restart")).ok(),
            Some(CheckpointMode::Restart)
        );
        let e = CheckpointMode::parse(Some("hard")).unwrap_err().to_string();
        assert!(e.contains("\"hard\"") && e.contains("TRUNCATE"), "{e}");
    }

    #[test]
    fn timeout_pragma_and_unmanaged_errors() {
        let f = Fake {
            timeout: Cell::new(DEFAULT_CHECKPOINT_TIMEOUT),
            ck: Cell::new(None),
        };
        let get = |arg| {
            pragma("checkpoint_timeout", arg, Via::Control, &f)
                .unwrap()
                .map_err(|e| e.to_string())
        };
        assert_eq!(get(None), Ok("30000".to_string()));
        assert_eq!(get(Some("1500")), Ok("1500".to_string()));
        assert_eq!(get(Some("2s")), Ok("2000".to_string()));
        assert!(get(Some("soon"))
            .unwrap_err()
            .contains("bad checkpoint_timeout"));
        assert_eq!(get(None), Ok("2000".to_string()));
        for p in [
            "litestream_checkpoint",
            "litestream_status",
            "litestream_lag",
        ] {
            let e = pragma(p, None, Via::Database, &f).map(|r| r.map_err(|e| e.to_string()));
            assert_eq!(e, Some(Err(not_replicated())));
        }
        assert_eq!(f.ck.get(), None, "no checkpoint without a managed database");
        assert!(pragma("user_version", None, Via::Control, &f).is_none());
    }

    #[test]
    fn checkpoint_row() {
        let ck = WalCheckpoint {
            busy: false,
            log: 5,
            checkpointed: 5,
        };
        assert_eq!(
            checkpoint_json(3, &ck),
            r#"{"replicated_txid":"0000000000000003","busy":0,"log":5,"checkpointed":5}"#
        );
    }
}

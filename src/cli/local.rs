//! Commands that read or change a database's local state (its meta directory), with the
//! texts and JSON of Litestream 0.5.17: `status [-json] [DB_PATH]` and
//! `reset [-dry-run] DB_PATH`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::flags::FlagSet;
use super::listing::write_table;
use super::{config_arg, CliError};
use crate::staging::MetaDir;

pub const STATUS_USAGE: &str = "\
The status command displays the replication status of databases.

Usage:

\tlitestream status [arguments] [database path]

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-json
\t    Output raw JSON instead of human-readable text.

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

If a database path is provided, only that database's status is shown.
Otherwise, all configured databases are displayed.

Output columns:
  database      Path to the SQLite database
  status        Current status (ok, not initialized, no database, error)
  local txid    Latest local transaction ID
  wal size      Current WAL file size

Note: the replica's TXID and the lag are shown, while the program runs, by
PRAGMA litestream.status and by the metrics (addr:).

Examples:

\t$ litestream status
\t$ litestream status /path/to/db
\t$ litestream status -json
";

pub const RESET_USAGE: &str = "\
The reset command clears local Litestream state for a database.

This is useful for recovering from corrupted or missing local files. The reset
removes the staged transactions from the metadata directory and forgets the
WAL position, so that the next sync ships a full image of the database. The
replica position is kept (replication continues the replica's TXID chain). The
database file itself is not modified. Stop the programs writing the database
first.

Usage:

\tlitestream reset [arguments] <path>

Arguments:

\t-config PATH
\t    Specifies the configuration file.
\t    Defaults to $LITESTREAM_CONFIG or /etc/litestream.yml

\t-no-expand-env
\t    Disables environment variable expansion in configuration file.

\t-dry-run
\t    Print the local files that would be removed without deleting them.

Examples:

\t# Reset local state for a specific database
\tlitestream reset /path/to/database.db

\t# Preview local files that would be removed
\tlitestream reset -dry-run /path/to/database.db

\t# Reset using a specific configuration file
\tlitestream reset -config /etc/litestream.yml /path/to/database.db
";

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Go's `humanize.Bytes`: SI units, one decimal below 10.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct DbStatus {
    pub database: String,
    pub status: String,
    pub local_txid: String,
    pub wal_size: String,
}

/// One database's row: whether it exists, the TXID sealed locally, the size of its `-wal`.
pub fn db_status(path: &Path, meta: &MetaDir) -> DbStatus {
    let mut s = DbStatus {
        database: path.display().to_string(),
        status: "unknown".into(),
        local_txid: "-".into(),
        wal_size: "-".into(),
    };
    if !path.exists() {
        s.status = "no database".into();
        return s;
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(PathBuf::from(wal)) {
        Ok(m) => s.wal_size = human_bytes(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => s.wal_size = "0 B".into(),
        Err(_) => {}
    }
    match meta.load_state() {
        Ok(Some(st)) if st.txid > 0 => {
            s.local_txid = crate::format_txid(st.txid);
            s.status = "ok".into();
        }
        Ok(_) => s.status = "not initialized".into(),
        Err(_) => s.status = "error".into(),
    }
    s
}

pub fn run_status(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = config_arg::flags(FlagSet::new()).bool("json").parse(args)?;
    let cfg = config_arg::load_parsed(&f)?;
    let filter = f.args.first().filter(|a| !a.is_empty());
    let wanted = filter.map(|p| cfg.find_db(Path::new(p)).map(|d| d.path.clone()));
    let rows: Vec<DbStatus> = cfg
        .dbs
        .iter()
        .filter(|d| match &wanted {
            None => true,
            Some(w) => w.as_ref() == Some(&d.path),
        })
        .map(|d| db_status(&d.path, &MetaDir::for_db(&d.path, d.meta_path.as_deref())))
        .collect();
    if f.flag("json") {
        let text = serde_json::to_string_pretty(&rows).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let mut table = vec![vec![
        "database".to_string(),
        "status".into(),
        "local txid".into(),
        "wal size".into(),
    ]];
    table.extend(
        rows.into_iter()
            .map(|r| vec![r.database, r.status, r.local_txid, r.wal_size]),
    );
    write_table(out, &table)?;
    Ok(())
}

pub fn run_reset(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let f = config_arg::flags(FlagSet::new())
        .bool("dry-run")
        .parse(args)?;
    let arg = f.db_path_arg("reset")?;
    let db_path = std::path::absolute(&arg).map_err(|e| usage(format!("{arg}: {e}")))?;
    let meta_path = match f.get("config") {
        Some(_) => {
            let cfg = config_arg::load_parsed(&f)?;
            cfg.find_db(&db_path).and_then(|d| d.meta_path.clone())
        }
        None => None,
    };
    match std::fs::metadata(&db_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "database does not exist: {}",
                db_path.display()
            )))
        }
        Err(e) => return Err(usage(format!("cannot access database: {e}"))),
        Ok(_) => {}
    }
    let meta = MetaDir::for_db(&db_path, meta_path.as_deref());
    let db = db_path.display();
    if !meta.root.exists() {
        writeln!(out, "No local state to reset for {db}")?;
        writeln!(
            out,
            "Meta directory does not exist: {}",
            meta.root.display()
        )?;
        return Ok(());
    }
    let staging = meta.staging_dir();
    let files: Vec<PathBuf> = meta
        .list_segments()
        .map_err(|e| usage(format!("reading {}: {e}", staging.display())))?
        .into_iter()
        .map(|s| meta.segment_path(s))
        .collect();
    if f.flag("dry-run") {
        writeln!(
            out,
            "Dry run: local Litestream state would be reset for: {db}"
        )?;
        writeln!(out, "Would remove: {}", staging.display())?;
        if files.is_empty() {
            writeln!(out, "No local staged files would be removed.")?;
            return Ok(());
        }
        writeln!(out, "Files that would be removed:")?;
        for file in &files {
            writeln!(out, "  {}", file.display())?;
        }
        writeln!(out, "No files were removed.")?;
        return Ok(());
    }
    writeln!(out, "Resetting local Litestream state for: {db}")?;
    writeln!(out, "Removing: {}", staging.display())?;
    reset(&meta).map_err(|e| usage(format!("reset failed: {e}")))?;
    writeln!(
        out,
        "Reset complete. Next replication sync will ship a full image of the database."
    )?;
    Ok(())
}

/// Forgets the WAL position (the next capture stages a full image) and deletes the staged
/// segments that image supersedes. The replica position and sealed files are kept.
pub fn reset(meta: &MetaDir) -> Result<(), crate::staging::StagingError> {
    if let Some(mut st) = meta.load_state()? {
        st.wal = None;
        st.closed = None;
        meta.save_state(&st)?;
    }
    for seq in meta.list_segments()? {
        let p = meta.segment_path(seq);
        std::fs::remove_file(&p).map_err(|e| crate::staging::StagingError::Io {
            path: p.clone(),
            source: e,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_like_go() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(82), "82 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(4120), "4.1 kB");
        assert_eq!(human_bytes(12_345_678), "12 MB");
        assert_eq!(human_bytes(4_128_272), "4.1 MB");
    }

    #[test]
    fn status_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let meta = MetaDir::for_db(&db, None);
        assert_eq!(db_status(&db, &meta).status, "no database");
        std::fs::write(&db, b"x").unwrap();
        let s = db_status(&db, &meta);
        assert_eq!(
            (s.status.as_str(), s.wal_size.as_str()),
            ("not initialized", "0 B")
        );
        meta.create_dirs().unwrap();
        let st = crate::staging::State {
            txid: 0x2a,
            ..Default::default()
        };
        meta.save_state(&st).unwrap();
        std::fs::write(dir.path().join("a.db-wal"), vec![0u8; 4152]).unwrap();
        let s = db_status(&db, &meta);
        assert_eq!(s.status, "ok");
        assert_eq!(s.local_txid, "000000000000002a");
        assert_eq!(s.wal_size, "4.2 kB");
    }
}

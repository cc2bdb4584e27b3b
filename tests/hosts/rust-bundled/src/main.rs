//! A Rust host with a bundled SQLite writing through the extension:
//! `litestream-host-rust-bundled SO DB OTHER ROWS`. The extension is loaded into a first,
//! in-memory connection; the database is then opened by its plain path: the configuration
//! names it, so `litestream` is SQLite's default VFS. OTHER is a database it does not name.
//! Prints `key=value` lines for the test to check.
use rusqlite::{Connection, LoadExtensionGuard};

fn text(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get::<_, Option<String>>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| "NULL".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, so, db_path, other_path, rows] = args.as_slice() else {
        eprintln!("usage: litestream-host-rust-bundled SO DB OTHER ROWS");
        std::process::exit(2);
    };
    let rows: usize = rows.parse().expect("ROWS is a number");

    let boot = Connection::open_in_memory().expect("open :memory:");
    load(&boot, so);
    println!("sqlite_version={}", rusqlite::version());

    let mut db = Connection::open(db_path).expect("open the database");
    db.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
        .expect("create table");
    for i in 0..rows {
        db.execute(
            "INSERT INTO t(v, b) VALUES (?1, randomblob(300))",
            [format!("row {i}")],
        )
        .expect("insert");
    }
    let tx = db.transaction().expect("begin");
    tx.execute("UPDATE t SET v = v || ' updated' WHERE id % 3 = 0", [])
        .expect("update");
    tx.commit().expect("commit");
    println!("journal_mode={}", text(&db, "PRAGMA journal_mode"));
    println!("checkpoint={}", text(&db, "PRAGMA litestream.checkpoint"));
    let lag: Option<f64> = db
        .query_row("SELECT litestream_lag()", [], |r| r.get(0))
        .expect("litestream_lag()");
    println!("lag={}", lag.map_or("NULL".into(), |l| l.to_string()));
    db.execute("INSERT INTO t(v) VALUES ('after the checkpoint')", [])
        .expect("last insert");

    let other = Connection::open(other_path).expect("open the other database");
    other
        .execute_batch("CREATE TABLE x(a); INSERT INTO x VALUES (1)")
        .expect("write the other database");
    println!("other_journal_mode={}", text(&other, "PRAGMA journal_mode"));
    println!("other_lag={}", text(&other, "SELECT litestream_lag()"));

    // Loading again, into a second connection, keeps `litestream` the default VFS.
    let second = Connection::open_in_memory().expect("open a second :memory:");
    load(&second, so);
    println!("default_after_second_load={}", default_vfs());
    // The host unregisters it: new opens use the system VFS; open files keep working.
    unregister_litestream();
    println!("default_after_unregister={}", default_vfs());
    db.execute("INSERT INTO t(v) VALUES ('after the unregister')", [])
        .expect("insert after the unregister");
    // Loading once more registers it again, as the default.
    let third = Connection::open_in_memory().expect("open a third :memory:");
    load(&third, so);
    println!("default_after_reload={}", default_vfs());
}

fn load(conn: &Connection, so: &str) {
    // SAFETY: loading our own extension, built by the project.
    unsafe {
        let _guard = LoadExtensionGuard::new(conn).expect("enable extension loading");
        conn.load_extension(so, None::<&str>)
            .expect("load the extension");
    }
}

/// The name of SQLite's default VFS.
fn default_vfs() -> String {
    // SAFETY: a null name asks for the default VFS; its zName is a NUL-terminated string that
    // lives as long as the registration.
    unsafe {
        let v = rusqlite::ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!v.is_null(), "no default VFS");
        std::ffi::CStr::from_ptr((*v).zName)
            .to_string_lossy()
            .into_owned()
    }
}

fn unregister_litestream() {
    // SAFETY: the name is NUL-terminated; unregistering only unlinks the VFS from SQLite's list.
    unsafe {
        let v = rusqlite::ffi::sqlite3_vfs_find(c"litestream".as_ptr());
        assert!(!v.is_null(), "the litestream VFS is not registered");
        assert_eq!(
            rusqlite::ffi::sqlite3_vfs_unregister(v),
            rusqlite::ffi::SQLITE_OK
        );
    }
}

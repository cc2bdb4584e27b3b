"""A Python host writing through the extension: `write.py MODULE SO DB OTHER ROWS`.

MODULE is `apsw` or `pysqlite3` (both bundle their own SQLite). The extension is loaded into a
first, in-memory connection; the database is then opened by its plain path (no `?vfs=`): the
configuration names it, so `litestream` is SQLite's default VFS. OTHER is a database the
configuration does not name. Prints `key=value` lines for the test to check.
"""
import sys

module, so, db_path, other_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

if module == "apsw":
    import apsw

    boot = apsw.Connection(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
    version = apsw.sqlite_lib_version()

    def connect(path):
        return apsw.Connection(path)

    def rows_of(conn, sql, params=()):
        return [tuple(r) for r in conn.execute(sql, params)]

    def write(conn, sql, params=()):
        with conn:
            conn.execute(sql, params)

elif module == "pysqlite3":
    from pysqlite3 import dbapi2 as sqlite3

    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
    version = sqlite3.sqlite_version

    def connect(path):
        return sqlite3.connect(path, isolation_level=None)

    def rows_of(conn, sql, params=()):
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    def write(conn, sql, params=()):
        conn.execute("BEGIN")
        conn.execute(sql, params)
        conn.execute("COMMIT")

else:
    raise SystemExit(f"unknown module {module!r}")

print(f"sqlite_version={version}")
conn = connect(db_path)
write(conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
for i in range(rows):
    write(conn, "INSERT INTO t(v, b) VALUES (?, randomblob(300))", (f"row {i}",))
write(conn, "UPDATE t SET v = v || ' updated' WHERE id % 3 = 0")
print(f"journal_mode={rows_of(conn, 'PRAGMA journal_mode')[0][0]}")
print(f"checkpoint={rows_of(conn, 'PRAGMA litestream.checkpoint')[0][0]}")
print(f"lag={rows_of(conn, 'SELECT litestream_lag()')[0][0]}")
write(conn, "INSERT INTO t(v) VALUES ('after the checkpoint')")

other = connect(other_path)
write(other, "CREATE TABLE x(a)")
write(other, "INSERT INTO x VALUES (1)")
print(f"other_journal_mode={rows_of(other, 'PRAGMA journal_mode')[0][0]}")
print(f"other_lag={rows_of(other, 'SELECT litestream_lag()')[0][0]}")
other.close()
conn.close()

-- The SQL surface where the extension manages nothing: NULL from the functions, SQLite's own
-- error for the dotted pragma, a clear error from the underscore pragma on a file opened
-- through the VFS but not replicated, and untouched connections outside the VFS.
.load @SO@
SELECT litestream_lag() IS NULL, litestream_status() IS NULL;
PRAGMA litestream.checkpoint;
.open file:@DIR@/plain.db?vfs=litestream
CREATE TABLE t(x);
PRAGMA database_list;
PRAGMA litestream.status;
PRAGMA litestream_checkpoint;
PRAGMA litestream_status;
SELECT litestream_checkpoint();
SELECT litestream_lag() IS NULL, litestream_status() IS NULL;
PRAGMA journal_mode;
.open @DIR@/other.db
CREATE TABLE t(x);
PRAGMA database_list;
PRAGMA litestream_checkpoint;
SELECT litestream_lag() IS NULL;
PRAGMA journal_mode;
.quit

-- golden: config app.db
-- The database named in LITESTREAM_CONFIG replicates; another one opened through the same
-- VFS passes through untouched (stays in rollback-journal mode).
.load @SO@
.open file:@DIR@/app.db?vfs=litestream
CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT);
INSERT INTO kv VALUES ('a', 'one'), ('b', 'two');
SELECT k, v FROM kv ORDER BY k;
PRAGMA journal_mode;
.open file:@DIR@/other.db?vfs=litestream
CREATE TABLE x(a);
INSERT INTO x VALUES (42);
SELECT a FROM x;
PRAGMA journal_mode;
.quit

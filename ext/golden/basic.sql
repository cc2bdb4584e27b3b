-- Load the extension (twice: the second load must be harmless), open a database through the
-- litestream VFS with a zero-config replica, and use it like any database.
.load @SO@
.load @SO@
.open file:@DIR@/basic.db?vfs=litestream&replica=file://@DIR@/replica
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, n REAL);
INSERT INTO t(name, n) VALUES ('alpha', 1.5), ('beta', 2), ('gamma', NULL);
SELECT id, name, n FROM t ORDER BY id;
PRAGMA journal_mode;
BEGIN;
UPDATE t SET n = 10 WHERE name = 'beta';
DELETE FROM t WHERE name = 'gamma';
COMMIT;
SELECT count(*), sum(n) FROM t;
.load @SO@
SELECT name FROM t WHERE id = 2;
PRAGMA journal_mode;
PRAGMA integrity_check;
.quit

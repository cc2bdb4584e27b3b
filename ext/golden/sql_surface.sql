-- golden: config app.db
-- golden: sync-interval 1h
-- The SQL surface on a replicated database: PRAGMA litestream.* (control database attached
-- as `litestream`), the underscore forms, and the litestream_*() functions. With a 1h
-- sync-interval nothing is shipped in the background after the first sync, so only the
-- checkpoints decide what reaches the replica.
.load @SO@
SELECT 'loading connection', litestream_lag() IS NULL, litestream_status() IS NULL;
.open file:@DIR@/app.db?vfs=litestream
PRAGMA database_list;
BEGIN;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES ('a'), ('b');
COMMIT;
-- Ships the commit, waits for the replica, checkpoints (PASSIVE).
PRAGMA litestream.checkpoint;
PRAGMA litestream.lag;
PRAGMA litestream_lag;
SELECT litestream_lag();
-- A commit after the checkpoint stays pending (sync-interval 1h).
INSERT INTO t(v) VALUES ('c');
SELECT json_extract(s, '$.role'), json_extract(s, '$.txid'), json_extract(s, '$.replicated_txid'),
       json_extract(s, '$.pending_transactions'), json_extract(s, '$.pending_bytes') > 0,
       json_extract(s, '$.last_sync') IS NOT NULL, json_extract(s, '$.last_error'),
       json_extract(s, '$.lag') >= 0, json_extract(s, '$.lag_alert'),
       json_extract(s, '$.lag_alert_exceeded'), json_extract(s, '$.db') = '@DIR@/app.db',
       json_extract(s, '$.replica')
FROM (SELECT litestream_status() AS s);
SELECT litestream_lag() >= 0;
-- Each mode, each spelling.
PRAGMA litestream.checkpoint(TRUNCATE);
SELECT json_extract(litestream_status(), '$.pending_transactions');
INSERT INTO t(v) VALUES ('d');
PRAGMA litestream_checkpoint(full);
INSERT INTO t(v) VALUES ('e');
PRAGMA main.litestream_checkpoint(RESTART);
INSERT INTO t(v) VALUES ('f');
SELECT litestream_checkpoint('passive');
SELECT litestream_checkpoint();
-- The status pragma is the function's JSON.
PRAGMA litestream.checkpoint_timeout;
PRAGMA litestream.checkpoint_timeout = 1500;
PRAGMA litestream_checkpoint_timeout = '2s';
PRAGMA litestream.checkpoint_timeout;
-- Errors.
PRAGMA litestream.checkpoint(HARD);
SELECT litestream_checkpoint('soft');
PRAGMA litestream.checkpoint_timeout = 'soon';
BEGIN;
SELECT count(*) FROM t;
PRAGMA litestream.checkpoint;
COMMIT;
CREATE TABLE litestream.x(a);
-- Built-in pragmas still work on the control database (an empty, read-only database).
PRAGMA litestream.user_version;
PRAGMA litestream.nosuch;
SELECT count(*) FROM litestream.sqlite_schema;
-- Detached, the dotted form is gone; the underscore form stays.
DETACH litestream;
PRAGMA litestream.lag;
PRAGMA litestream_lag;
SELECT v FROM t ORDER BY id;
-- The same file through the system VFS (named: loading made `litestream` the default): no
-- checkpoint from here (the capture would not see it), but the replicated database's lag is known.
.open file:@DIR@/app.db?vfs=unix
PRAGMA database_list;
SELECT litestream_checkpoint();
SELECT litestream_lag() IS NOT NULL;
.quit

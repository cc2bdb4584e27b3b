-- golden: config app.db
-- golden: replica app.db/replica
-- golden: yaml lag-alert: 100ms
-- golden: yaml shutdown-sync-timeout: 500ms
-- golden: env LOG_LEVEL=error
-- The replica cannot be written (its parent is a regular file: even root cannot create it):
-- commits succeed, the lag grows past lag-alert, and the checkpoint times out naming the
-- cause, leaving the WAL alone. At exit, the final sync gives up after shutdown-sync-timeout
-- (the commit stays staged for the next process).
.load @SO@
.open file:@DIR@/app.db?vfs=litestream
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES (1);
COMMIT;
CREATE TEMP TABLE lag0 AS SELECT litestream_lag() AS v;
.system sleep 0.3
SELECT litestream_lag() > v, litestream_lag() > 0.1 FROM lag0;
SELECT json_extract(s, '$.pending_transactions'), json_extract(s, '$.replicated_txid'),
       json_extract(s, '$.last_sync'), json_extract(s, '$.last_error'),
       json_extract(s, '$.lag_alert'), json_extract(s, '$.lag_alert_exceeded')
FROM (SELECT litestream_status() AS s);
PRAGMA litestream.checkpoint_timeout = 3000;
PRAGMA litestream.checkpoint;
SELECT litestream_checkpoint('TRUNCATE');
SELECT count(*) FROM t;
.quit

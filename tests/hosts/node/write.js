// A Node host writing through the extension: `node write.js SO DB OTHER ROWS`.
// better-sqlite3 bundles its own SQLite and opens databases with the default VFS (it cannot pass
// `?vfs=`): the extension is loaded into a first, in-memory connection, which makes `litestream`
// the default VFS because the configuration names DB. OTHER is a database it does not name.
// Prints `key=value` lines for the test to check. `require` finds better-sqlite3 through
// NODE_PATH (the project-local install made by scripts/setup-hosts.sh).
'use strict';
const Database = require('better-sqlite3');

const [so, dbPath, otherPath, rowsArg] = process.argv.slice(2);
const rows = Number(rowsArg);

const boot = new Database(':memory:');
boot.loadExtension(so);
console.log(`sqlite_version=${boot.prepare('SELECT sqlite_version()').pluck().get()}`);

const db = new Database(dbPath);
db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)');
const insert = db.prepare('INSERT INTO t(v, b) VALUES (?, randomblob(300))');
for (let i = 0; i < rows; i++) insert.run(`row ${i}`);
db.transaction(() => db.exec("UPDATE t SET v = v || ' updated' WHERE id % 3 = 0"))();
console.log(`journal_mode=${db.pragma('journal_mode', { simple: true })}`);
console.log(`checkpoint=${db.prepare('PRAGMA litestream.checkpoint').raw().get()[0]}`);
console.log(`lag=${db.prepare('SELECT litestream_lag()').pluck().get()}`);
db.exec("INSERT INTO t(v) VALUES ('after the checkpoint')");

const other = new Database(otherPath);
other.exec('CREATE TABLE x(a); INSERT INTO x VALUES (1)');
console.log(`other_journal_mode=${other.pragma('journal_mode', { simple: true })}`);
console.log(`other_lag=${other.prepare('SELECT litestream_lag()').pluck().get()}`);
other.close();
db.close();
boot.close();

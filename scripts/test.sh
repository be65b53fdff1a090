#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine: installs
# what it needs (the wasm32-wasip2 target), then formatting, lints and the
# full test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
# rustup installs nothing on its own here (RUSTUP_AUTO_INSTALL=0).
rustup target add wasm32-wasip2
rustup component add rustfmt clippy

step "services (PostgreSQL at 127.0.0.1:5432, database test)"
# The store's tests run on SQLite and on PostgreSQL; start PostgreSQL if it
# is installed but down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters --no-header | while read -r version cluster _; do
            pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
        done
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
# Tests make a schema each (t_*, e2e_*, bench_*); clear those of earlier
# runs, one transaction per schema (a schema's tables each take a lock).
test_db=postgres://postgres@127.0.0.1:5432/test
psql -Atq "$test_db" -c "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
    WHERE nspname ~ '^(t|e2e|bench)_'" \
    | PGOPTIONS='-c client_min_messages=warning' psql -q "$test_db" >/dev/null \
    || echo "could not clear earlier test schemas; continuing"
# Tests that need PostgreSQL fail rather than skip when this is set.
export SLUICE_REQUIRE_POSTGRES=1

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "end-to-end (official SDKs against real processes)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider

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

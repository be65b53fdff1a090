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

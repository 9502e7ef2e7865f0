#!/usr/bin/env bash
# Everything CI runs: setup, formatting, lints, and the full test suite in release mode
# (debug builds of llama.cpp crawl). Tests use the real teacher fetched by setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
# The fault suite in a bounded form (3 random kills per command, 1 of `distill run`); the
# full form (scripts/fault-suite.sh) gives the figures in docs/RELIABILITY.md.
rm -rf "${TMPDIR:-/tmp}/distill-fault-suite"
bash scripts/fault-suite.sh --trials 3 --run-trials 1 --work "${TMPDIR:-/tmp}/distill-fault-suite"

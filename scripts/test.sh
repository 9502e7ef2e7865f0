#!/usr/bin/env bash
# Everything CI runs: setup, formatting, lints, and the full test suite in release mode
# (debug builds of llama.cpp crawl). Tests use the real teacher fetched by setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release

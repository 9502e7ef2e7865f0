#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, record the starter
# prompts with the default teacher, and show what was recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/distill"
"$bin" record --prompts prompts/train.jsonl --out data/train "$@"
"$bin" record --prompts prompts/valid.jsonl --out data/valid "$@"
"$bin" inspect data/train

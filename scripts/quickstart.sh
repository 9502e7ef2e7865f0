#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, then run the whole
# pipeline on the default teacher with `distill run` (record the starter prompts, distill a
# teacher-initialised student, evaluate it, then offer the side-by-side chat). In a terminal
# it opens the dashboard; without one (or with --no-tui) it prints progress lines. Run it
# again to resume. Extra arguments go to `distill run` (e.g. --minutes 30 --out data/run2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/distill"
exec "$bin" run "$@"
